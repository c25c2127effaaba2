-- `include` and `extends` of compose files, resolved before the keys are translated: included
-- files' services, volumes, networks, secrets and configs join the main file's; a service that
-- extends another gets the other's keys merged under its own, by compose's merge rules
-- (compose-spec.io, "Merge and override": mappings merge, command/entrypoint/healthcheck.test
-- replace, mounts merge by target, other sequences append). Relative paths of another file
-- are rewritten to stay correct from the main file's directory. mw.import then writes each
-- extended service as a function in the stack file (see `bases` below).
local yaml      = require "mw.yaml"
local paths     = require "mw.path"
local yamlvalue = require "mw.yamlvalue"
local importcx  = require "mw.importcx"

local merge = {}

local NULL = yaml.null
local is_list, is_map = yamlvalue.is_list, yamlvalue.is_map
local sorted_keys, str_of, compact = yamlvalue.sorted_keys, yamlvalue.str_of, yamlvalue.compact
local fatal, warn = importcx.fatal, importcx.warn
local normpath, join, dirname = paths.normalize, paths.join, paths.dirname

local MAX_DEPTH = 10       -- include/extends chains deeper than this are refused (a loop, surely)

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

-- Paths ----------------------------------------------------------------------------------------

-- A path of a file in directory `rel` (relative to the main file's), from the main file's.
local function rebase(rel, p)
  if type(p) ~= "string" or rel == "." or p:find("^/") or p:find("^~") or p:find("^%a[%w+.-]*://")
      or p:find("^git@") or p:find("^%$") then
    return p
  end
  local n = normpath(rel .. "/" .. p)
  if n:sub(1, 1) ~= "." and n:sub(1, 1) ~= "/" then n = "./" .. n end
  return n
end

local function rebase_volume(rel, v)
  if type(v) == "string" then
    local src, rest = v:match("^([^:]+)(:.*)$")
    if src and (src:find("^%.") or src:find("^/") or src:find("^~")) then return rebase(rel, src) .. rest end
    return v
  end
  if is_map(v) and v.type == "bind" and type(v.source) == "string" then
    v.source = rebase(rel, v.source)
  end
  return v
end

-- Rewrites the relative paths a service holds (build context, env files, bind mounts).
local function rebase_service(rel, svc)
  if rel == "." or not is_map(svc) then return svc end
  if type(svc.build) == "string" then svc.build = rebase(rel, svc.build)
  elseif is_map(svc.build) then svc.build.context = rebase(rel, svc.build.context or ".") end
  local ef = svc.env_file
  if type(ef) == "string" then svc.env_file = rebase(rel, ef)
  elseif is_list(ef) then
    for i, f in ipairs(ef) do
      if type(f) == "string" then ef[i] = rebase(rel, f) elseif is_map(f) then f.path = rebase(rel, f.path) end
    end
  end
  if is_list(svc.volumes) then
    for i, v in ipairs(svc.volumes) do svc.volumes[i] = rebase_volume(rel, v) end
  end
  if is_map(svc.extends) and svc.extends.file ~= nil then svc.extends.file = rebase(rel, svc.extends.file) end
  return svc
end

local function rebase_top(rel, doc)
  for _, kind in ipairs { "secrets", "configs" } do
    if is_map(doc[kind]) then
      for _, d in pairs(doc[kind]) do if is_map(d) and d.file ~= nil then d.file = rebase(rel, d.file) end end
    end
  end
  if is_map(doc.services) then
    for _, svc in pairs(doc.services) do rebase_service(rel, svc) end
  end
end

-- Merging ---------------------------------------------------------------------------------------

local REPLACE = { command = true, entrypoint = true, test = true }
local AS_MAP = { environment = true, labels = true, sysctls = true, args = true, annotations = true }
local BY_TARGET = { volumes = true, devices = true, secrets = true, configs = true, tmpfs = true }

-- "K=V" lists as mappings (environment, labels...), so that both forms merge by key.
local function as_map(v)
  if not is_list(v) or next(v) == nil then return v end
  local out = {}
  for _, item in ipairs(v) do
    local s = str_of(item) or ""
    local k, x = s:match("^([^=]+)=(.*)$")
    if k then out[k] = x else out[s] = NULL end
  end
  return out
end

-- The mount target of a volume/device/secret/config entry, to merge them by.
local function target_of(key, v)
  if is_map(v) then return v.target or v.source end
  local s = str_of(v) or ""
  if key == "secrets" or key == "configs" then return s end
  local parts = {}
  for p in s:gmatch("[^:]+") do parts[#parts + 1] = p end
  return parts[2] or parts[1]
end

local function merge_value(key, base, over)
  if over == nil then return copy(base) end
  if base == nil or REPLACE[key] then return copy(over) end
  if AS_MAP[key] then base, over = as_map(base), as_map(over) end
  if is_map(base) and is_map(over) and next(base) ~= nil then
    local out = copy(base)
    for k, x in pairs(over) do out[k] = merge_value(k, base[k], x) end
    return out
  end
  if is_list(base) and is_list(over) and type(base) == "table" and type(over) == "table" then
    local out, seen = {}, {}
    if BY_TARGET[key] then
      local mine = {}
      for _, x in ipairs(over) do mine[target_of(key, x)] = true end
      for _, x in ipairs(base) do if not mine[target_of(key, x)] then out[#out + 1] = copy(x) end end
      for _, x in ipairs(over) do out[#out + 1] = copy(x) end
      return out
    end
    for _, x in ipairs(base) do
      local id = type(x) == "table" and {} or x
      if not seen[id] then seen[id] = true; out[#out + 1] = copy(x) end
    end
    for _, x in ipairs(over) do
      local id = type(x) == "table" and {} or x
      if not seen[id] then seen[id] = true; out[#out + 1] = copy(x) end
    end
    return out
  end
  return copy(over)
end

function merge.service(base, over)
  local out = {}
  for k, x in pairs(base) do out[k] = copy(x) end
  for k, x in pairs(over) do out[k] = merge_value(k, base[k], x) end
  return out
end

-- Files -----------------------------------------------------------------------------------------

local function load(cx, rel)
  local full = join(cx.dir, rel)
  local text, err = cx.read(full)
  if not text then
    err = tostring(err)
    if err:sub(1, #full + 2) == full .. ": " then err = err:sub(#full + 3) end
    fatal(string.format("cannot read %s: %s", rel, err))
  end
  local doc, yerr = yaml.decode(text)
  if doc == nil then fatal(rel .. ": " .. tostring(yerr)) end
  if not is_map(doc) then fatal(rel .. ": not a compose file (expected a mapping)") end
  return doc
end

-- cx.files_docs caches the other files by their path (relative to the main file's directory).
local function other_file(cx, rel)
  rel = normpath(rel)
  cx.docs = cx.docs or {}
  if not cx.docs[rel] then
    local doc = load(cx, rel)
    rebase_top(dirname(rel), doc)
    cx.docs[rel] = doc
  end
  return cx.docs[rel], rel
end

-- extends ---------------------------------------------------------------------------------------

-- The service `name` of `services` with its extends resolved -> the merged service; each
-- resolved service records in cx.extended[name] = { base = id, file = rel|nil, service = s }.
local function resolve_extends(cx, services, name, file, depth, stack)
  local svc = services[name]
  if not is_map(svc) or svc.extends == nil or svc.extends == NULL then return svc end
  local key = (file or "") .. "\0" .. name
  if stack[key] then fatal(string.format("service %s: extends makes a loop", name)) end
  if depth > MAX_DEPTH then fatal(string.format("service %s: extends goes deeper than %d", name, MAX_DEPTH)) end
  stack[key] = true
  local ext = svc.extends
  local base_name, base_file
  if type(ext) == "string" then
    base_name = ext
  elseif is_map(ext) then
    base_name = str_of(ext.service)
    base_file = ext.file ~= nil and str_of(ext.file) or nil
    for _, k in ipairs(sorted_keys(ext)) do
      if k ~= "service" and k ~= "file" then fatal(string.format("service %s: unknown key extends.%s", name, k)) end
    end
  end
  if not base_name then
    fatal(string.format("service %s: 'extends' needs a service, got %s", name, compact(ext)))
  end
  local where_services, where_file = services, file
  if base_file then
    local doc, rel = other_file(cx, base_file)
    if not is_map(doc.services) or doc.services[base_name] == nil then
      fatal(string.format("service %s: extends %s, which %s does not define", name, base_name, base_file))
    end
    where_services, where_file = doc.services, rel
  elseif services[base_name] == nil then
    fatal(string.format("service %s: extends %s, which is not a service%s", name, base_name,
      file and (" of " .. file) or ""))
  end
  local base = resolve_extends(cx, where_services, base_name, where_file, depth + 1, stack)
  stack[key] = nil
  local own = copy(svc)
  own.extends = nil
  local merged = merge.service(is_map(base) and base or {}, own)
  merged.extends = nil
  if depth == 0 then
    cx.extended[name] = { file = where_file, service = base_name, base = copy(base) }
  end
  services[name] = merged
  return merged
end

-- include ---------------------------------------------------------------------------------------

local TOP_MERGED = { "services", "volumes", "networks", "secrets", "configs" }

local function include(cx, doc, depth)
  local inc = doc.include
  doc.include = nil
  if inc == nil or inc == NULL then return end
  if depth > MAX_DEPTH then fatal("include goes deeper than " .. MAX_DEPTH .. " files") end
  if not is_list(inc) then fatal("top-level 'include' must be a list") end
  for _, item in ipairs(inc) do
    local files = item
    if is_map(item) then
      files = item.path
      for _, k in ipairs(sorted_keys(item)) do
        if k ~= "path" then
          warn(cx, string.format("include %s: '%s' has no equivalent (mw import reads the file's own " ..
            "paths and the main .env)", compact(item.path), k))
          cx.include_notes[#cx.include_notes + 1] = string.format("include %s: %s: %s  (no equivalent in mw)",
            compact(item.path), k, compact(item[k]))
        end
      end
    end
    if type(files) == "string" then files = { files } end
    if not is_list(files) or #files == 0 then fatal("include: bad entry " .. compact(item)) end
    local combined
    for _, f in ipairs(files) do
      f = str_of(f) or fatal("include: bad path " .. compact(f))
      local other = copy((other_file(cx, f)))
      include(cx, other, depth + 1)
      if not combined then combined = other
      else
        for _, kind in ipairs(TOP_MERGED) do
          if is_map(other[kind]) then
            combined[kind] = is_map(combined[kind]) and combined[kind] or {}
            for n, d in pairs(other[kind]) do
              combined[kind][n] = kind == "services" and is_map(combined[kind][n])
                and merge.service(combined[kind][n], d) or d
            end
          end
        end
      end
    end
    local names = {}
    for _, kind in ipairs(TOP_MERGED) do
      if is_map(combined[kind]) then
        doc[kind] = is_map(doc[kind]) and doc[kind] or {}
        for _, n in ipairs(sorted_keys(combined[kind])) do
          if doc[kind][n] ~= nil then
            fatal(string.format("include %s: %s '%s' is also defined in the including file",
              compact(files[1]), kind:sub(1, -2), n))
          end
          doc[kind][n] = combined[kind][n]
          if kind == "services" then
            names[#names + 1] = n
            cx.included[n] = normpath(str_of(files[1]))
          end
        end
      end
    end
    cx.include_notes[#cx.include_notes + 1] = string.format("include %s: service%s %s, written below",
      table.concat(files, " + "), #names == 1 and "" or "s", table.concat(names, ", "))
    for k in pairs(combined) do
      local known = false
      for _, kind in ipairs(TOP_MERGED) do if kind == k then known = true end end
      if not known and k ~= "version" and k ~= "name" and k:sub(1, 2) ~= "x-" then
        warn(cx, string.format("include %s: top-level '%s' has no equivalent (left out)", compact(files[1]), k))
        cx.include_notes[#cx.include_notes + 1] = string.format("include %s: %s: %s  (no equivalent in mw)",
          compact(files[1]), k, compact(combined[k]))
      end
    end
  end
end

-- merge.resolve(cx, doc) -> doc with includes and extends resolved (cx.dir, cx.read, cx.warnings)
-- Sets cx.extended (service -> the base it extends) and cx.included (service -> its file).
function merge.resolve(cx, doc)
  cx.extended, cx.included, cx.include_notes = {}, {}, {}
  if not is_map(doc) then return doc end
  include(cx, doc, 0)
  if is_map(doc.services) then
    for _, n in ipairs(sorted_keys(doc.services)) do resolve_extends(cx, doc.services, n, nil, 0, {}) end
  end
  return doc
end

merge.rebase = rebase

return merge
