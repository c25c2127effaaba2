-- The conversion context of `mw import`: the one-line failure that stops it, warnings said
-- once, values from env files noted by name, and the ways a service key is kept as a comment.
local paths     = require "mw.path"
local yamlvalue = require "mw.yamlvalue"

local importcx = {}

local normpath, join = paths.normalize, paths.join
local is_list, str_of, compact = yamlvalue.is_list, yamlvalue.str_of, yamlvalue.compact


-- The path of abs as seen from the directory from (both absolute), starting with "." so that
-- the stack file reads it as a path and not as a volume name; abs itself when the two share
-- nothing but the root, where a chain of ".." would only obscure it.
local function relpath(from, abs)
  local a, b = {}, {}
  for s in from:gmatch("[^/]+") do a[#a + 1] = s end
  for s in abs:gmatch("[^/]+") do b[#b + 1] = s end
  local i = 1
  while a[i] and b[i] and a[i] == b[i] do i = i + 1 end
  if i == 1 then return abs end
  local parts = {}
  for _ = i, #a do parts[#parts + 1] = ".." end
  for j = i, #b do parts[#parts + 1] = b[j] end
  if #parts == 0 then return "." end
  local s = table.concat(parts, "/")
  return parts[1] == ".." and s or "./" .. s
end

-- Conversion context ---------------------------------------------------------------------------

-- A failure that stops the import: one line, raised through convert's pcall.
local Fatal = {}
local function fatal(msg) error(setmetatable({ msg = msg }, Fatal), 0) end

local function warn(cx, msg)
  if not cx.warned[msg] then
    cx.warned[msg] = true
    cx.warnings[#cx.warnings + 1] = msg
  end
end

-- Records that the value of variable `name` from the env file at `path` is written into the
-- stack file: the command names them (never their values) with the file they came from.
local function baked(cx, path, name)
  local b = cx.baked[path]
  if not b then
    b = { path = path, names = {} }
    cx.baked[path] = b
    cx.baked[#cx.baked + 1] = b
  end
  b.names[name] = true
end

local function lookup(cx, name)
  local v = cx.getenv(name)
  if v == nil then
    v = cx.dotenv[name]
    if v ~= nil then baked(cx, cx.dotenv_path, name) end
  end
  return v
end

-- Why some compose keys have no equivalent, for the comment and the warning.
local WHY = {
  container_name = "mw names containers <stack>-<component>",
  network_mode = "components join the stack's network",
  expose = "components reach each other's ports on the stack network without it",
  links = "components reach each other by name on the stack network",
  external_links = "components reach each other by name on the stack network",
}

local function note(comp, text) comp.notes[#comp.notes + 1] = text end

-- Keeps a compose key as a comment and says so on stderr.
local function unsupported(cx, comp, key, value, why)
  why = why or WHY[key]
  note(comp, string.format("%s: %s  (no equivalent in mw%s)", key, compact(value), why and ("; " .. why) or ""))
  warn(cx, string.format("service %s: '%s' has no equivalent%s (kept as a comment)", comp.orig, key,
    why and (": " .. why) or ""))
end

-- Keeps a value mw can only take part of, or not in this form, as a comment and says why.
local function partial(cx, comp, key, value, problem)
  note(comp, string.format("%s: %s  (%s)", key, compact(value), problem))
  warn(cx, string.format("service %s: '%s': %s (kept as a comment)", comp.orig, key, problem))
end

local function set(cx, comp, field, value, key, raw_value)
  if comp.fields[field] ~= nil then
    partial(cx, comp, key, raw_value, "ignored: '" .. field .. "' is already set from another key")
    return
  end
  comp.fields[field] = value
end

local function need_string(comp, key, v)
  local s = str_of(v)
  if s == nil then fatal(string.format("service %s: '%s' must be text, got %s", comp.orig, key, compact(v))) end
  return s
end

local function string_list(comp, key, v)
  if type(v) ~= "table" or not is_list(v) then
    fatal(string.format("service %s: '%s' must be a list, got %s", comp.orig, key, compact(v)))
  end
  local out = {}
  for i, x in ipairs(v) do out[i] = need_string(comp, key, x) end
  return out
end

-- A path from the compose file as the stack file must write it.
local function path_for(cx, p)
  if p:sub(1, 1) == "~" then
    local home = lookup(cx, "HOME")
    if not home then fatal(string.format("cannot expand %s: HOME is not set", compact(p))) end
    local abs = normpath(home .. p:sub(2))
    warn(cx, string.format("path %s expanded to %s", compact(p), abs))
    return abs
  end
  if p:sub(1, 1) == "/" then return normpath(p) end
  if cx.same_dir then
    local n = normpath(p)
    if n == "." or n:sub(1, 3) == "../" or n == ".." then return n end
    return "./" .. n
  end
  if not cx.rewrote then
    cx.rewrote = true
    warn(cx, "the stack file is not beside the compose file: relative paths are rewritten to stay " ..
      "correct from " .. cx.out_dir)
  end
  return relpath(cx.out_dir, join(cx.dir, p))
end

importcx.Fatal = Fatal
importcx.fatal = fatal
importcx.warn = warn
importcx.baked = baked
importcx.lookup = lookup
importcx.WHY = WHY
importcx.note = note
importcx.unsupported = unsupported
importcx.partial = partial
importcx.set = set
importcx.need_string = need_string
importcx.string_list = string_list
importcx.path_for = path_for

return importcx
