-- What a compose service publishes and mounts, as stack fields: ports, volumes and tmpfs,
-- secrets, networks. Handlers by compose key, as in mw.compose.
local yaml      = require "mw.yaml"
local yamlvalue = require "mw.yamlvalue"
local luawriter = require "mw.luawriter"
local importcx  = require "mw.importcx"

local H = {}

local NULL = yaml.null
local is_list, is_map = yamlvalue.is_list, yamlvalue.is_map
local sorted_keys, str_of = yamlvalue.sorted_keys, yamlvalue.str_of
local bool_of, compact = yamlvalue.bool_of, yamlvalue.compact
local ordered = luawriter.ordered
local fatal, warn, unsupported, partial = importcx.fatal, importcx.warn, importcx.unsupported, importcx.partial
local need_string, string_list, path_for = importcx.need_string, importcx.string_list, importcx.path_for
local note = importcx.note

-- Ports ---------------------------------------------------------------------------------------

local MAX_RANGE = 20

local function port_range(s)
  local a, b = s:match("^(%d+)%-(%d+)$")
  if a then return tonumber(a), tonumber(b) end
  local n = s:match("^%d+$")
  if n then return tonumber(n), tonumber(n) end
  return nil
end

-- Expands "[ip:][host[-host]:]container[-container][/proto]" into mw port strings, or returns
-- nil, why when it cannot.
local function short_port(s)
  local body, proto = s:match("^(.*)/(%w+)$")
  if not body then body, proto = s, nil end
  local ip, rest = body:match("^(%[[%x:%.]+%]):(.*)$")
  if not ip then
    local parts = {}
    for p in (body .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
    if #parts == 3 then ip, rest = parts[1], parts[2] .. ":" .. parts[3] else rest = body end
  end
  local host, cont = rest:match("^([^:]*):([^:]*)$")
  if not host then cont = rest end
  if not cont:find("-", 1, true) and not (host or ""):find("-", 1, true) then return { s } end
  local c1, c2 = port_range(cont)
  if not c1 or c2 < c1 then return nil, "a bad port range" end
  local h1, h2
  if host and host ~= "" then
    h1, h2 = port_range(host)
    if not h1 or h2 < h1 then return nil, "a bad port range" end
    if h2 - h1 ~= c2 - c1 then
      return nil, "a host range for fewer or more container ports; mw publishes each port on a fixed host port"
    end
  end
  if c2 - c1 + 1 > MAX_RANGE then return nil, "a range of more than " .. MAX_RANGE .. " ports; list the ports" end
  local out = {}
  for i = 0, c2 - c1 do
    local p = tostring(c1 + i)
    if h1 then p = tostring(h1 + i) .. ":" .. p elseif host == "" then p = ":" .. p end
    if ip then p = ip .. ":" .. p end
    if proto then p = p .. "/" .. proto end
    out[#out + 1] = p
  end
  return out
end

local LONG_PORT = { target = true, published = true, host_ip = true, protocol = true }

function H.ports(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'ports' must be a list", comp.orig)) end
  local out = {}
  for _, p in ipairs(v) do
    if type(p) == "number" then
      out[#out + 1] = p
    elseif type(p) == "string" then
      local list, why = short_port(p)
      if not list then
        partial(cx, comp, "ports", p, "no equivalent for " .. why)
      else
        for _, x in ipairs(list) do out[#out + 1] = x end
      end
    elseif is_map(p) then
      local t = {}
      local target = p.target
      local published = p.published ~= nil and p.published ~= NULL and str_of(p.published) or nil
      if published == "" then published = nil end
      local ok = true
      if published and published:find("-", 1, true) then
        local a, b = port_range(published)
        if a and a == b then published = tostring(a)
        else
          partial(cx, comp, "ports", p, "no equivalent for a host port range for one container port")
          ok = false
        end
      end
      if ok then
        t[#t + 1] = { "container", math.tointeger(tonumber(target)) or target }
        if published then t[#t + 1] = { "host", math.tointeger(tonumber(published)) or published } end
        if p.host_ip ~= nil then t[#t + 1] = { "ip", need_string(comp, "ports.host_ip", p.host_ip) } end
        if p.protocol ~= nil then t[#t + 1] = { "proto", need_string(comp, "ports.protocol", p.protocol) } end
        out[#out + 1] = ordered(t)
        for _, k in ipairs(sorted_keys(p)) do
          if not LONG_PORT[k] then
            unsupported(cx, comp, "ports." .. k, p[k], k == "mode" and "ports are published on this host" or nil)
          end
        end
      end
    else
      fatal(string.format("service %s: bad port %s", comp.orig, compact(p)))
    end
  end
  if #out > 0 then comp.fields.ports = out end
end

-- Volumes -------------------------------------------------------------------------------------

local function is_path(s) return s:find("^[/.~]") ~= nil end

local function check_named(cx, comp, name)
  if not cx.volumes[name] then
    warn(cx, string.format("service %s: volume '%s' is not declared under the top-level 'volumes'", comp.orig, name))
  end
end

local function add_volume(comp, v)
  comp.fields.volumes = comp.fields.volumes or {}
  table.insert(comp.fields.volumes, v)
end

-- A named volume declared `external: true` at the top: mounted by its own name (its `name:` or
-- the key), never created -> true if added so.
local function external_volume(cx, comp, src, target, ro)
  local d = cx.volumes[src]
  if not (is_map(d) and bool_of(d.external)) then return false end
  local kv = { { "source", str_of(d.name) or src }, { "target", target } }
  if ro then kv[#kv + 1] = { "read_only", true } end
  kv[#kv + 1] = { "external", true }
  add_volume(comp, ordered(kv))
  return true
end

local function tmpfs_entry(cx, comp, target, opts, what)
  local t = { { "tmpfs", target } }
  for _, o in ipairs(opts) do
    local k, x = o:match("^([^=]+)=(.*)$")
    if k == "size" then
      t[#t + 1] = { "size", math.tointeger(tonumber(x)) or x }
    elseif o ~= "" and o ~= "rw" then
      partial(cx, comp, what, target .. ":" .. o, "the tmpfs option '" .. (k or o) .. "' has no equivalent")
    end
  end
  return ordered(t)
end

local function short_volume(cx, comp, s)
  local parts = {}
  for p in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  if #parts == 1 then
    partial(cx, comp, "volumes", s,
      "an anonymous volume would be lost on every recreation; name it: \"name:" .. s .. "\"")
    return
  end
  local src, target, mode = parts[1], parts[2], table.concat(parts, ":", 3)
  if #parts > 3 or src == "" or target == "" then
    fatal(string.format("service %s: bad volume %s", comp.orig, compact(s)))
  end
  local ro = false
  for o in mode:gmatch("[^,]+") do
    if o == "ro" then ro = true
    elseif o ~= "rw" then
      partial(cx, comp, "volumes", s, "the mount option '" .. o .. "' has no equivalent")
    end
  end
  if is_path(src) then
    src = path_for(cx, src)
  else
    check_named(cx, comp, src)
    if external_volume(cx, comp, src, target, ro) then return end
  end
  add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
end

local LONG_VOLUME = { type = true, source = true, target = true, read_only = true, tmpfs = true, bind = true }

local function long_volume(cx, comp, v)
  local kind = str_of(v.type) or "volume"
  local target = need_string(comp, "volumes.target", v.target)
  local ro = bool_of(v.read_only) == true
  if kind == "tmpfs" then
    local opts = {}
    if is_map(v.tmpfs) then
      if v.tmpfs.size ~= nil then opts[#opts + 1] = "size=" .. str_of(v.tmpfs.size) end
      for _, k in ipairs(sorted_keys(v.tmpfs)) do
        if k ~= "size" then unsupported(cx, comp, "volumes.tmpfs." .. k, v.tmpfs[k]) end
      end
    end
    add_volume(comp, tmpfs_entry(cx, comp, target, opts, "volumes"))
  elseif kind == "volume" or kind == "bind" then
    local src = v.source ~= nil and v.source ~= NULL and str_of(v.source) or nil
    if not src or src == "" then
      partial(cx, comp, "volumes", v, "an anonymous volume would be lost on every recreation; give it a source")
      return
    end
    local create
    if kind == "bind" then
      src = path_for(cx, src)
      if is_map(v.bind) then
        for _, k in ipairs(sorted_keys(v.bind)) do
          if k == "create_host_path" then create = bool_of(v.bind[k])
          else unsupported(cx, comp, "volumes.bind." .. k, v.bind[k]) end
        end
      elseif v.bind ~= nil then
        unsupported(cx, comp, "volumes.bind", v.bind)
      end
    else
      check_named(cx, comp, src)
    end
    -- an external volume is mounted by its own name (external_volume adds it)
    local external = kind == "volume" and external_volume(cx, comp, src, target, ro)
    if not external and create == false then
      local kv = { { "source", src }, { "target", target } }
      if ro then kv[#kv + 1] = { "read_only", true } end
      kv[#kv + 1] = { "create_host_path", false }
      add_volume(comp, ordered(kv))
    elseif not external then
      add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
    end
  else
    partial(cx, comp, "volumes", v, "volumes of type '" .. kind .. "' have no equivalent")
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    if not LONG_VOLUME[k] then unsupported(cx, comp, "volumes." .. k, v[k]) end
  end
end

function H.volumes(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'volumes' must be a list", comp.orig)) end
  for _, item in ipairs(v) do
    if type(item) == "string" then short_volume(cx, comp, item)
    elseif is_map(item) then long_volume(cx, comp, item)
    else fatal(string.format("service %s: bad volume %s", comp.orig, compact(item))) end
  end
end

function H.tmpfs(cx, comp, v)
  if type(v) == "string" then v = { v } end
  for _, item in ipairs(string_list(comp, "tmpfs", v)) do
    local target, opts = item:match("^([^:]+):(.*)$")
    target = target or item
    local list = {}
    for o in (opts or ""):gmatch("[^,]+") do list[#list + 1] = o end
    comp.tmpfs = comp.tmpfs or {}
    table.insert(comp.tmpfs, tmpfs_entry(cx, comp, target, list, "tmpfs"))
  end
end

-- Secrets -------------------------------------------------------------------------------------

function H.secrets(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'secrets' must be a list", comp.orig)) end
  local out = {}
  for _, item in ipairs(v) do
    local source, name = item, nil
    if is_map(item) then
      source = item.source
      for _, k in ipairs(sorted_keys(item)) do
        if k ~= "source" and k ~= "target" then unsupported(cx, comp, "secrets." .. k, item[k]) end
      end
      if item.target ~= nil then
        local t = need_string(comp, "secrets.target", item.target)
        name = t:match("^/run/secrets/([^/]+)$") or (not t:find("/") and t) or nil
        if not name then
          partial(cx, comp, "secrets", item, "no equivalent: mw mounts secrets at /run/secrets/<name> only")
          goto continue
        end
      end
    end
    source = need_string(comp, "secrets", source)
    name = name or source
    do
      local def = cx.secrets[source]
      if not def then
        partial(cx, comp, "secrets", item, "no top-level secret '" .. source .. "'")
      elseif not is_map(def) or def.file == nil then
        partial(cx, comp, "secrets", item,
          "secret '" .. source .. "' is not a file; mw mounts secrets from files only")
      else
        out[name] = path_for(cx, need_string(comp, "secrets.file", def.file))
      end
    end
    ::continue::
  end
  if next(out) then comp.fields.secrets = out end
end

-- Configs -------------------------------------------------------------------------------------

-- compose's configs: a file mounted read-only (mw's `configs`). A top-level config with
-- `content:` becomes a file `mw import -o` writes beside the stack file (configs/<name>), so the
-- stack file stays short and the file can be edited as what it is; `environment:` and
-- `external:` have no equivalent (top-level warning, a comment here).
local CONFIG_MODE_WHY = "a bind mount keeps the host file's own owner and mode; set them on the file"

function H.configs(cx, comp, v)
  if not is_list(v) then fatal(string.format("service %s: 'configs' must be a list", comp.orig)) end
  local out, any = {}, false
  for _, item in ipairs(v) do
    local source, target = item, nil
    if is_map(item) then
      source = item.source
      for _, k in ipairs(sorted_keys(item)) do
        if k == "uid" or k == "gid" or k == "mode" then
          unsupported(cx, comp, "configs." .. k, item[k], CONFIG_MODE_WHY)
        elseif k ~= "source" and k ~= "target" then
          unsupported(cx, comp, "configs." .. k, item[k])
        end
      end
      if item.target ~= nil then target = need_string(comp, "configs.target", item.target) end
    end
    source = need_string(comp, "configs", source)
    target = target or ("/" .. source)
    if target:sub(1, 1) ~= "/" then target = "/" .. target end
    local def = cx.configs[source]
    local file
    if not is_map(def) then
      partial(cx, comp, "configs", item, "no top-level config '" .. source .. "'")
    elseif def.file ~= nil then
      file = path_for(cx, need_string(comp, "configs.file", def.file))
    elseif def.content ~= nil then
      if cx.write_files then
        file = "./configs/" .. source
        cx.files[file] = need_string(comp, "configs.content", def.content)
      else
        note(comp, string.format("configs: %s  (its content is written to a file only with mw import -o)",
          compact(item)))
      end
    else
      note(comp, string.format("configs: %s  (config '%s' is not a file; see the top-level warning)",
        compact(item), source))
    end
    if file then
      local name = source:gsub("[^%w_.-]", "_")
      -- the same config at two targets: mw's configs are named, so the second gets a new name
      local base, i = name, 2
      while out[name] do name = base .. "-" .. i; i = i + 1 end
      out[name] = target == "/" .. name and file or ordered { { "file", file }, { "target", target } }
      any = true
    end
  end
  if any then comp.fields.configs = out end
end

-- Networks ------------------------------------------------------------------------------------

-- A top-level compose network's one ipam subnet -> subnet, gateway | nil (several configs or
-- other ipam keys do not translate).
function H.ipam_subnet(d)
  local ipam = is_map(d) and d.ipam
  if not (is_map(ipam) and is_list(ipam.config) and #ipam.config == 1 and is_map(ipam.config[1])) then return nil end
  local c = ipam.config[1]
  if not str_of(c.subnet) then return nil end
  for k in pairs(ipam) do if k ~= "config" and not (k == "driver" and ipam[k] == "default") then return nil end end
  for k in pairs(c) do if k ~= "subnet" and k ~= "gateway" then return nil end end
  return str_of(c.subnet), str_of(c.gateway)
end

-- networks: a list of names, or a mapping whose ipv4_address and aliases become mw's map form
-- (README "Networks"); a network with no options stays { name = {} } beside one that has some.
function H.networks(cx, comp, v)
  local names, opts, any = {}, {}, false
  local function add(n)
    -- compose's "default" network is the stack's own network in mw.
    if n ~= "default" then names[#names + 1] = n end
  end
  if is_list(v) then
    for _, n in ipairs(string_list(comp, "networks", v)) do add(n) end
  elseif is_map(v) then
    for _, n in ipairs(sorted_keys(v)) do
      add(n)
      local o = v[n]
      if is_map(o) then
        local kv = {}
        for _, k in ipairs(sorted_keys(o)) do
          local d = cx.networks[n]
          local addressable = is_map(d) and (bool_of(d.external) or H.ipam_subnet(d))
          if n ~= "default" and k == "ipv4_address" and str_of(o[k]) and addressable then
            kv[#kv + 1] = { "ipv4_address", str_of(o[k]) }
          elseif n ~= "default" and k == "aliases" and is_list(o[k]) then
            kv[#kv + 1] = { "aliases", string_list(comp, "networks." .. n .. ".aliases", o[k]) }
          else
            unsupported(cx, comp, "networks." .. n .. "." .. k, o[k],
              n == "default" and "mw's stack network has no subnet of its own; declare a network" or
              k == "ipv4_address" and "the network declares no single ipam subnet, and the engine gives " ..
                "static addresses only on one" or
              k == "aliases" and "a component is known by its name on the stack network" or nil)
          end
        end
        if #kv > 0 then opts[n], any = ordered(kv), true end
      end
    end
  else
    fatal(string.format("service %s: 'networks' must be a list or a mapping", comp.orig))
  end
  if #names == 0 then return end
  if not any then comp.fields.networks = names return end
  local kv = {}
  for _, n in ipairs(names) do kv[#kv + 1] = { n, opts[n] or {} } end
  comp.fields.networks = ordered(kv)
end

H.add_volume = add_volume   -- not a compose key: mw.compose adds tmpfs entries last with it

return H
