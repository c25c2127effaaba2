-- `mw import`: turns a compose file into an equivalent, readable stack.lua, keeping what has
-- no equivalent as comments so that nothing is silently dropped.
local yaml     = require "mw.yaml"
local duration = require "mw.duration"
local owner    = require "mw.owner"

local M = {}

local NULL = yaml.null
local USAGE = "usage: mw import compose.yaml [-o stack.lua] [--force]"

-- Paths ---------------------------------------------------------------------------------------

local paths = require "mw.path"
local normpath, join, dirname, basename = paths.normalize, paths.join, paths.dirname, paths.basename

local function cwd()
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" then return pwd end
  local p = io.popen and io.popen("pwd 2>/dev/null")
  if p then
    local d = p:read("l")
    p:close()
    if d and d:sub(1, 1) == "/" then return d end
  end
  return "/"
end

local function absolute(p, base)
  if p:sub(1, 1) == "/" then return normpath(p) end
  return join(base or cwd(), p)
end

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

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- Values from YAML ----------------------------------------------------------------------------

local function is_table(v) return type(v) == "table" end
-- Mapping keys are always strings, so a table with list items is a sequence.
local function is_list(v) return type(v) == "table" and (rawlen(v) > 0 or next(v) == nil) end
local function is_map(v) return type(v) == "table" and rawlen(v) == 0 end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return ks
end

local function num_text(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
  return string.format("%.14g", v)
end

-- Scalars as the text a container sees (nil for null).
local function str_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return num_text(v) end
  if type(v) == "boolean" then return tostring(v) end
  return nil
end

-- Compose reads yes/no/on/off as booleans where a boolean is expected; the decoder keeps them
-- as text, so the field decides here.
local BOOLS = { ["true"] = true, yes = true, on = true, y = true,
                ["false"] = false, no = false, off = false, n = false }
local function bool_of(v)
  if type(v) == "boolean" then return v end
  if type(v) == "string" then return BOOLS[v:lower()] end
  return nil
end

-- A compose value in one line, for a comment: flow-style YAML.
local function compact(v)
  if v == NULL then return "null" end
  if type(v) == "string" then
    if v ~= "" and v:find("^[%w_./@+-][%w_./:@+=, -]*$") and not v:find("[ :]$") then return v end
    return (string.format("%q", v):gsub("\\\n", "\\n"):gsub("\r", "\\r"))
  end
  if type(v) == "number" then return num_text(v) end
  if type(v) ~= "table" then return tostring(v) end
  local items = {}
  if is_list(v) and next(v) ~= nil then
    for _, x in ipairs(v) do items[#items + 1] = compact(x) end
    return "[" .. table.concat(items, ", ") .. "]"
  end
  for _, k in ipairs(sorted_keys(v)) do items[#items + 1] = compact(k) .. ": " .. compact(v[k]) end
  return "{" .. table.concat(items, ", ") .. "}"
end

-- Lua source -----------------------------------------------------------------------------------

local RAW, ORDERED = {}, {}
local function raw(code) return setmetatable({ code = code }, RAW) end
local function ordered(pairs_list) return setmetatable(pairs_list, ORDERED) end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat
  return then true until while]]):gmatch("%S+") do KEYWORDS[w] = true end

-- A Lua string literal that keeps valid UTF-8 readable and escapes everything else.
local function quote(s)
  local out, i, n = { '"' }, 1, #s
  while i <= n do
    -- a run of printable ASCII goes as it is: byte by byte, a 15 MB value took 33 s
    local j = s:find('[%c"\\\128-\255]', i)
    if not j then out[#out + 1] = s:sub(i) break end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    i = j
    local c = s:byte(i)
    local len = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2 or 1
    local ch = s:sub(i, i + len - 1)
    local run_end = c >= 0x80 and ((s:find("[^\128-\255]", i) or n + 1) - 1)
    if run_end and utf8.len(s, i, run_end) then
      out[#out + 1] = s:sub(i, run_end)       -- a run of valid UTF-8 goes as it is too
      i = run_end + 1
    elseif c >= 0x80 and len > 1 and utf8.len(ch) == 1 then
      out[#out + 1] = ch
      i = i + len
    else
      if c == 34 then out[#out + 1] = '\\"'
      elseif c == 92 then out[#out + 1] = "\\\\"
      elseif c == 10 then out[#out + 1] = "\\n"
      elseif c == 9 then out[#out + 1] = "\\t"
      elseif c == 13 then out[#out + 1] = "\\r"
      elseif c < 32 or c >= 127 then out[#out + 1] = string.format("\\x%02x", c)
      else out[#out + 1] = string.char(c) end
      i = i + 1
    end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function lua_key(k)
  if type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  if type(k) == "number" then return "[" .. num_text(k) .. "]" end
  return "[" .. quote(k) .. "]"
end

local WIDTH = 100

local function render(v, indent)
  local mt = getmetatable(v)
  if mt == RAW then return v.code end
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%.1f", v)
    end
    return num_text(v)
  end
  if tv == "boolean" then return tostring(v) end
  assert(tv == "table", "import: cannot write a " .. tv)
  local items = {}
  if mt == ORDERED then
    for _, kv in ipairs(v) do items[#items + 1] = lua_key(kv[1]) .. " = " .. render(kv[2], indent + 2) end
  elseif rawlen(v) > 0 then
    for _, x in ipairs(v) do items[#items + 1] = render(x, indent + 2) end
  else
    for _, k in ipairs(sorted_keys(v)) do items[#items + 1] = lua_key(k) .. " = " .. render(v[k], indent + 2) end
  end
  if #items == 0 then return "{}" end
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if indent + #one <= WIDTH - 20 and not one:find("\n") then return one end
  local pad = string.rep(" ", indent + 2)
  return "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. ",\n" .. string.rep(" ", indent) .. "}"
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

-- .env and env_file syntax ---------------------------------------------------------------------

-- -> list of { key, value } (value nil: "KEY" alone, taken from the environment) | nil, err
local function parse_dotenv(text)
  text = text:gsub("\r\n", "\n")
  local out, pos, lineno, n = {}, 1, 0, #text
  while pos <= n do
    lineno = lineno + 1
    local eol = text:find("\n", pos, true) or n + 1
    local line = text:sub(pos, eol - 1)
    local nextpos = eol + 1
    local body = line:match("^%s*(.-)%s*$")
    if body ~= "" and body:sub(1, 1) ~= "#" then
      local lead = #line:match("^%s*")
      local exp = body:match("^export%s+()")
      if exp then lead = lead + exp - 1; body = body:sub(exp) end
      local key, eq = body:match("^([%w_.-]+)%s*()=")
      if not key then
        if not body:find("^[%w_.-]+$") then
          return nil, string.format("line %d: expected NAME=value, got %s", lineno, compact(body))
        end
        out[#out + 1] = { body }
      else
        local vstart = pos + lead + eq          -- just past "="
        while text:sub(vstart, vstart):find("^[ \t]$") do vstart = vstart + 1 end
        local q = text:sub(vstart, vstart)
        local value
        if q == '"' or q == "'" then
          local buf, j = {}, vstart + 1
          while true do
            local c = text:sub(j, j)
            if c == "" then return nil, string.format("line %d: unterminated %s quote", lineno, q) end
            if c == q then break end
            if q == '"' and c == "\\" then
              local d = text:sub(j + 1, j + 1)
              local esc = ({ n = "\n", t = "\t", r = "\r", ['"'] = '"', ["\\"] = "\\", ["$"] = "$" })[d]
              if esc then c = esc; j = j + 1 end
            end
            if c == "\n" then lineno = lineno + 1 end
            buf[#buf + 1] = c
            j = j + 1
          end
          value = table.concat(buf)
          nextpos = (text:find("\n", j, true) or n) + 1
        else
          value = text:sub(vstart, eol - 1)
          value = value:gsub("%s+#.*$", ""):match("^(.-)%s*$")
        end
        out[#out + 1] = { key, value }
      end
    end
    pos = nextpos
  end
  return out
end

-- Interpolation -------------------------------------------------------------------------------

-- Each ${...} finds its end by a scan of what it holds, and a default is interpolated on its
-- own: the work is the text times the nesting, so the nesting is bounded (20 000 levels never
-- finished). Compose files nest two or three levels at most.
M.MAX_NESTING = 32
-- Text interpolation may make, counted at every level: `$X` a million times with a 1 KB X is
-- a gigabyte. The same bound as the YAML loader's (yaml.max_bytes).
M.MAX_EXPANDED = 16 * 1024 * 1024

local function emit(cx, out, piece)
  cx.expanded = (cx.expanded or 0) + #piece
  if cx.expanded > M.MAX_EXPANDED then
    fatal(string.format("interpolation makes more than %d MiB of text", M.MAX_EXPANDED // 1048576))
  end
  out[#out + 1] = piece
end

-- ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt},
-- $VAR and $$, as compose does; a default may itself hold ${...}, up to MAX_NESTING deep.
local function interpolate(cx, s, where)
  if not s:find("$", 1, true) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local a = s:find("$", i, true)
    if not a then emit(cx, out, s:sub(i)); break end
    emit(cx, out, s:sub(i, a - 1))
    local c = s:sub(a + 1, a + 1)
    if c == "$" then
      emit(cx, out, "$")
      i = a + 2
    elseif c == "{" then
      local depth, j = 1, a + 2
      while true do
        j = s:find("[{}]", j)
        if not j then break end
        if s:byte(j) == 125 then                      -- "}"
          depth = depth - 1
          if depth == 0 then break end
        elseif s:byte(j - 1) == 36 then               -- "${"
          depth = depth + 1
          if depth > M.MAX_NESTING then
            fatal(string.format("%s: ${...} nested deeper than %d levels", where == "" and "(top level)" or where,
              M.MAX_NESTING))
          end
        end
        j = j + 1
      end
      if depth ~= 0 then
        local shown = compact(s)
        if #shown > 80 then shown = shown:sub(1, 72) .. "... (" .. #s .. " bytes)" end
        fatal(string.format("%s: unterminated ${ in %s", where, shown))
      end
      local body = s:sub(a + 2, j - 1)
      local name, op, rest = body:match("^([%a_][%w_]*)(:?[-?+])(.*)$")
      if not name then
        name = body:match("^([%a_][%w_]*)$")
        if not name then fatal(string.format("%s: bad interpolation ${%s}", where, body)) end
      end
      local val = lookup(cx, name)
      local set, nonempty = val ~= nil, val ~= nil and val ~= ""
      if op == nil then
        if not set then
          warn(cx, string.format("variable '%s' is not set; using an empty string", name))
          val = ""
        end
      elseif op == ":-" then
        if not nonempty then val = interpolate(cx, rest, where) end
      elseif op == "-" then
        if not set then val = interpolate(cx, rest, where) end
      elseif op == ":?" or op == "?" then
        if (op == ":?" and not nonempty) or (op == "?" and not set) then
          fatal(string.format("%s: required variable %s is missing a value%s", where, name,
            rest ~= "" and (": " .. interpolate(cx, rest, where)) or ""))
        end
      elseif op == ":+" then
        val = nonempty and interpolate(cx, rest, where) or ""
      else
        val = set and interpolate(cx, rest, where) or ""
      end
      emit(cx, out, val)
      i = j + 1
    elseif c:find("^[%a_]") then
      local name = s:match("^[%a_][%w_]*", a + 1)
      local val = lookup(cx, name)
      if val == nil then
        warn(cx, string.format("variable '%s' is not set; using an empty string", name))
        val = ""
      end
      emit(cx, out, val)
      i = a + 1 + #name
    else
      emit(cx, out, "$")
      i = a + 1
    end
  end
  return table.concat(out)
end

-- A copy of the tree with every string value interpolated (keys are left alone, as compose does).
local function interpolate_tree(cx, v, where)
  if type(v) == "string" then return interpolate(cx, v, where) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    local w = where
    if type(k) == "string" then w = where == "" and k or (where .. "." .. k) end
    out[k] = interpolate_tree(cx, x, w)
  end
  return out
end

-- Durations and sizes --------------------------------------------------------------------------

local GO_UNITS = { h = 3600, m = 60, s = 1, ms = 1e-3, us = 1e-6, ["\xc2\xb5s"] = 1e-6,
                   ["\xce\xbcs"] = 1e-6, ns = 1e-9 }

-- A Go duration ("1m30s", "1.5s", "300ms") or a number of seconds -> seconds | nil
local function go_seconds(v)
  if type(v) == "number" then return v >= 0 and v or nil end
  if type(v) ~= "string" then return nil end
  local s = v:gsub("^%+", "")
  if s == "0" then return 0 end
  if s == "" then return nil end
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, nxt = s:match("^(%d*%.?%d*)([^%d%.]+)()", pos)
    if not num or num == "" or num == "." or not GO_UNITS[unit] then return nil end
    total = total + tonumber(num) * GO_UNITS[unit]
    pos = nxt
  end
  return total
end

-- Components -----------------------------------------------------------------------------------

local FIELD_ORDER = {
  "image", "build", "command", "entrypoint", "working_dir", "user", "env", "depends_on",
  "heartbeat", "restart", "ports", "volumes", "secrets", "networks", "scale", "memory", "cpus",
  "shm_size", "ulimits", "hostname", "extra_hosts", "labels", "stop_signal", "stop_grace",
  "init", "read_only", "cap_add", "cap_drop",
}

-- Why some compose keys have no equivalent, for the comment and the warning.
local WHY = {
  container_name = "mw names containers <stack>-<component>",
  profiles = "compose starts this service only with --profile; mw always runs it",
  network_mode = "components join the stack's network",
  expose = "components reach each other's ports on the stack network without it",
  links = "components reach each other by name on the stack network",
  external_links = "components reach each other by name on the stack network",
  configs = "mount the file with a read-only bind volume instead",
  extends = "copy the fields of the extended service here",
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

local EMPTY_WORDS = "an empty value resets the image's, which mw cannot express"

-- Words for command, entrypoint and health checks: a string stays a string (mw splits it the
-- shell's way, as compose does), a list stays a list.
local function words(cx, comp, key, v)
  if v == NULL then return nil end
  if type(v) == "string" then
    v = v:match("^(.-)%s*$")
    if v == "" then partial(cx, comp, key, v, EMPTY_WORDS); return nil end
    return v
  end
  local list = string_list(comp, key, v)
  if #list == 0 then partial(cx, comp, key, v, EMPTY_WORDS); return nil end
  return list
end

local H = {}     -- handlers by compose key: function(cx, comp, value, svc)

function H.image(cx, comp, v, svc)
  if svc.build ~= nil and not comp.remote_build then
    partial(cx, comp, "image", v, "ignored beside 'build': compose tags the built image so, mw names it itself")
    return
  end
  comp.fields.image = need_string(comp, "image", v)
end

local BUILD_KEYS = { context = true, dockerfile = true, args = true, target = true }

function H.build(cx, comp, v, svc)
  local context = v
  if is_map(v) then context = v.context == nil and "." or v.context end
  context = need_string(comp, "build.context", context)
  if context:find("^%a[%w+.-]*://") or context:find("^git@") then
    if svc.image ~= nil then
      comp.remote_build = true
      partial(cx, comp, "build", v, "mw builds only from a local directory; using 'image' instead")
      return
    end
    fatal(string.format("service %s: build context %s is remote; mw builds only from a local directory",
      comp.orig, compact(context)))
  end
  context = path_for(cx, context)
  if type(v) == "string" then comp.fields.build = context; return end
  local b = { { "context", context } }
  if v.dockerfile ~= nil then b[#b + 1] = { "dockerfile", need_string(comp, "build.dockerfile", v.dockerfile) } end
  if v.args ~= nil and v.args ~= NULL then
    local args = {}
    if is_map(v.args) then
      for k, x in pairs(v.args) do
        args[k] = x == NULL and raw("os.getenv " .. quote(k)) or need_string(comp, "build.args", x)
      end
    else
      for _, item in ipairs(string_list(comp, "build.args", v.args)) do
        local k, x = item:match("^([^=]+)=(.*)$")
        if k then args[k] = x else args[item] = raw("os.getenv " .. quote(item)) end
      end
    end
    if next(args) then b[#b + 1] = { "args", args } end
  end
  if v.target ~= nil then b[#b + 1] = { "target", need_string(comp, "build.target", v.target) } end
  for _, k in ipairs(sorted_keys(v)) do
    if not BUILD_KEYS[k] then unsupported(cx, comp, "build." .. k, v[k]) end
  end
  comp.fields.build = #b == 1 and context or ordered(b)
end

function H.command(cx, comp, v) comp.fields.command = words(cx, comp, "command", v) end
function H.entrypoint(cx, comp, v) comp.fields.entrypoint = words(cx, comp, "entrypoint", v) end

-- environment and env_file together: env_file first (later files win), environment last.
local function env(cx, comp, svc)
  if comp.env_done then return end
  comp.env_done = true
  local final, groups = {}, {}
  local function put(key, value, source, file)
    final[key] = { value = value, source = source, file = file }
    if not groups[source] then
      groups[source] = true
      groups[#groups + 1] = source
    end
  end
  local files = svc.env_file
  if files ~= nil and files ~= NULL then
    if type(files) ~= "table" then files = { files } end
    for _, f in ipairs(files) do
      local path, required = f, true
      if is_map(f) then
        path = f.path
        if f.required ~= nil then required = bool_of(f.required) ~= false end
        if f.format ~= nil then unsupported(cx, comp, "env_file.format", f.format) end
      end
      path = need_string(comp, "env_file", path)
      local full = join(cx.dir, path)
      local text, err = cx.read(full)
      if not text then
        if required then
          err = tostring(err)
          if err:sub(1, #full + 2) == full .. ": " then err = err:sub(#full + 3) end
          fatal(string.format("service %s: env_file %s: %s", comp.orig, path, err))
        end
        partial(cx, comp, "env_file", path, "not found when imported (required: false), skipped")
      else
        local entries, perr = parse_dotenv(text)
        if not entries then fatal(string.format("service %s: env_file %s: %s", comp.orig, path, perr)) end
        local label = "from " .. path_for(cx, path)
        for _, e in ipairs(entries) do
          put(e[1], e[2] == nil and raw("os.getenv " .. quote(e[1])) or e[2], label, e[2] ~= nil and full or nil)
        end
      end
    end
  end
  local e = svc.environment
  if e ~= nil and e ~= NULL then
    local label = "from the compose file's environment"
    if is_map(e) then
      for _, k in ipairs(sorted_keys(e)) do
        local x = e[k]
        if x == NULL then put(k, raw("os.getenv " .. quote(k)), label)
        elseif type(x) == "table" then fatal(string.format("service %s: environment.%s must be text", comp.orig, k))
        else put(k, x, label) end
      end
    else
      for _, item in ipairs(string_list(comp, "environment", e)) do
        local k, x = item:match("^([^=]+)=(.*)$")
        if k then put(k, x, label) else put(item, raw("os.getenv " .. quote(item)), label) end
      end
    end
  end
  if #groups == 0 then return end
  for k, x in pairs(final) do if x.file then baked(cx, x.file, k) end end
  local pad = string.rep(" ", 8)
  local lines = { "{" }
  for _, source in ipairs(groups) do
    local keys = {}
    for k, x in pairs(final) do if x.source == source then keys[#keys + 1] = k end end
    table.sort(keys)
    if #keys > 0 then
      if #groups > 1 or source ~= "from the compose file's environment" then
        lines[#lines + 1] = pad .. "-- " .. source
      end
      for _, k in ipairs(keys) do
        lines[#lines + 1] = pad .. lua_key(k) .. " = " .. render(final[k].value, 8) .. ","
      end
    end
  end
  lines[#lines + 1] = string.rep(" ", 6) .. "}"
  comp.fields.env = raw(table.concat(lines, "\n"))
end

function H.environment(cx, comp, _, svc) env(cx, comp, svc) end
H.env_file = H.environment

local CONDITIONS = {
  service_started = "started", service_healthy = "healthy",
  service_completed_successfully = "started",
}

function H.depends_on(cx, comp, v)
  comp.deps = {}
  if type(v) == "string" then v = { v } end
  if is_list(v) then
    for _, d in ipairs(v) do
      comp.deps[#comp.deps + 1] = { name = need_string(comp, "depends_on", d), cond = "started" }
    end
    return
  end
  if not is_map(v) then fatal(string.format("service %s: 'depends_on' must be a list or a mapping", comp.orig)) end
  for _, d in ipairs(sorted_keys(v)) do
    local o = v[d]
    local cond = "service_started"
    if is_map(o) then
      cond = o.condition ~= nil and str_of(o.condition) or cond
      for _, k in ipairs(sorted_keys(o)) do
        if k == "required" and bool_of(o[k]) == false then
          partial(cx, comp, "depends_on." .. d .. ".required", o[k],
            "no equivalent: mw waits for every dependency")
        elseif k == "restart" and bool_of(o[k]) == true then
          partial(cx, comp, "depends_on." .. d .. ".restart", o[k],
            "no equivalent: use a policy with on_limit = \"dependents\" on " .. d)
        elseif k ~= "condition" and k ~= "required" and k ~= "restart" then
          unsupported(cx, comp, "depends_on." .. d .. "." .. k, o[k])
        end
      end
    end
    local mwcond = CONDITIONS[cond]
    if not mwcond then
      fatal(string.format("service %s: depends_on %s: unknown condition %s", comp.orig, d, compact(cond)))
    end
    if cond == "service_completed_successfully" then
      partial(cx, comp, "depends_on." .. d .. ".condition", cond,
        "no equivalent: mw cannot wait for a component to finish; using \"started\"")
    end
    comp.deps[#comp.deps + 1] = { name = d, cond = mwcond }
  end
end

local function dur_text(comp, key, v)
  local s = go_seconds(v)
  if not s then fatal(string.format("service %s: '%s': bad duration %s", comp.orig, key, compact(v))) end
  return duration.format(s)
end

function H.healthcheck(cx, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'healthcheck' must be a mapping", comp.orig)) end
  local test = v.test
  if bool_of(v.disable) == true or (is_list(test) and test[1] == "NONE") then
    comp.fields.heartbeat = false
    return
  end
  if test == nil or test == NULL then
    partial(cx, comp, "healthcheck", v, "without 'test' it relies on the image's HEALTHCHECK, which mw does not run")
    return
  end
  local exec
  if type(test) == "string" then
    exec = { "sh", "-c", test }
  else
    local list = string_list(comp, "healthcheck.test", test)
    local kind = table.remove(list, 1)
    if kind == "CMD" then
      exec = list
    elseif kind == "CMD-SHELL" then
      exec = { "sh", "-c", table.concat(list, " ") }
    else
      fatal(string.format("service %s: healthcheck.test must start with CMD, CMD-SHELL or NONE, got %s",
        comp.orig, compact(kind)))
    end
  end
  if #exec == 0 or (exec[1] == "sh" and exec[3] == "") then
    fatal(string.format("service %s: healthcheck.test has no command", comp.orig))
  end
  -- Compose's defaults, written out: mw's own (500ms, 1s) would exec far more often.
  local hb = { { "exec", exec },
               { "interval", dur_text(comp, "healthcheck.interval", v.interval == nil and "30s" or v.interval) },
               { "timeout", dur_text(comp, "healthcheck.timeout", v.timeout == nil and "30s" or v.timeout) } }
  local retries = v.retries == nil and 3 or v.retries
  hb[#hb + 1] = { "misses", math.tointeger(tonumber(retries)) or retries }
  if v.start_period ~= nil then
    hb[#hb + 1] = { "grace", dur_text(comp, "healthcheck.start_period", v.start_period) }
  end
  comp.fields.heartbeat = ordered(hb)
  for _, k in ipairs(sorted_keys(v)) do
    if k ~= "test" and k ~= "interval" and k ~= "timeout" and k ~= "retries" and k ~= "start_period"
        and k ~= "disable" then
      unsupported(cx, comp, "healthcheck." .. k, v[k])
    end
  end
end

local function policy_code(cx, kind, limit, within, delay)
  cx.uses.policy = true
  local parts = {}
  if delay then
    cx.uses.backoff = true
    parts[#parts + 1] = "backoff = backoff.constant { delay = " .. quote(delay) .. " }"
  end
  if limit then
    parts[#parts + 1] = string.format("limit = { restarts = %d, within = %s }", limit, quote(within or "1h"))
  end
  return raw("policy." .. kind .. (#parts > 0 and (" { " .. table.concat(parts, ", ") .. " }") or " {}"))
end

function H.restart(cx, comp, v)
  local s = v
  if bool_of(v) == false then s = "no" end
  s = need_string(comp, "restart", s)
  if s == "no" then
    comp.fields.restart = policy_code(cx, "never")
  elseif s == "always" or s == "unless-stopped" then
    comp.fields.restart = policy_code(cx, "always")
  elseif s == "on-failure" then
    comp.fields.restart = policy_code(cx, "on_failure")
  elseif s:find("^on%-failure:%d+$") then
    local n = math.tointeger(tonumber(s:match("%d+")))
    comp.fields.restart = policy_code(cx, "on_failure", n > 0 and n or nil)
    if n > 0 then
      note(comp, "restart: " .. s .. "  (compose counts restarts in all; mw counts them within an hour)")
    end
  else
    partial(cx, comp, "restart", v, "not a restart policy compose knows")
  end
end

local RESTART_CONDITION = { none = "never", ["on-failure"] = "on_failure", any = "always" }

local function restart_policy(cx, comp, rp)
  if comp.svc.restart ~= nil then
    partial(cx, comp, "deploy.restart_policy", rp, "ignored: 'restart' is given too and wins")
    return
  end
  if not is_map(rp) then fatal(string.format("service %s: deploy.restart_policy must be a mapping", comp.orig)) end
  local kind = RESTART_CONDITION[str_of(rp.condition) or "any"]
  if not kind then
    fatal(string.format("service %s: deploy.restart_policy.condition %s is unknown", comp.orig, compact(rp.condition)))
  end
  local limit = rp.max_attempts ~= nil and math.tointeger(tonumber(rp.max_attempts)) or nil
  if limit == 0 then limit = nil end
  local within = rp.window ~= nil and dur_text(comp, "deploy.restart_policy.window", rp.window) or nil
  local delay = rp.delay ~= nil and dur_text(comp, "deploy.restart_policy.delay", rp.delay) or nil
  comp.fields.restart = policy_code(cx, kind, kind ~= "never" and limit or nil, within, delay)
  for _, k in ipairs(sorted_keys(rp)) do
    if k ~= "condition" and k ~= "max_attempts" and k ~= "window" and k ~= "delay" then
      unsupported(cx, comp, "deploy.restart_policy." .. k, rp[k])
    end
  end
end

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
  end
  add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
end

local LONG_VOLUME = { type = true, source = true, target = true, read_only = true, tmpfs = true }

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
    if kind == "bind" then
      src = path_for(cx, src)
    else
      check_named(cx, comp, src)
    end
    add_volume(comp, src .. ":" .. target .. (ro and ":ro" or ""))
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

-- Networks ------------------------------------------------------------------------------------

function H.networks(cx, comp, v)
  local out = {}
  local function add(n)
    -- compose's "default" network is the stack's own network in mw.
    if n ~= "default" then out[#out + 1] = n end
  end
  if is_list(v) then
    for _, n in ipairs(string_list(comp, "networks", v)) do add(n) end
  elseif is_map(v) then
    for _, n in ipairs(sorted_keys(v)) do
      add(n)
      local o = v[n]
      if is_map(o) then
        for _, k in ipairs(sorted_keys(o)) do
          unsupported(cx, comp, "networks." .. n .. "." .. k, o[k],
            k == "aliases" and "a component is known by its name on the stack network" or nil)
        end
      end
    end
  else
    fatal(string.format("service %s: 'networks' must be a list or a mapping", comp.orig))
  end
  if #out > 0 then comp.fields.networks = out end
end

-- Resources and the rest ----------------------------------------------------------------------

local function size_value(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  return v
end

local function cpus_value(comp, v)
  local n = tonumber(v)
  if not n then fatal(string.format("service %s: bad cpus %s", comp.orig, compact(v))) end
  return n
end

function H.deploy(cx, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'deploy' must be a mapping", comp.orig)) end
  for _, k in ipairs(sorted_keys(v)) do
    local x = v[k]
    if k == "replicas" then
      set(cx, comp, "scale", math.tointeger(tonumber(x)) or x, "deploy.replicas", x)
    elseif k == "restart_policy" then
      restart_policy(cx, comp, x)
    elseif k == "resources" and is_map(x) then
      for _, r in ipairs(sorted_keys(x)) do
        local lim = x[r]
        if r == "limits" and is_map(lim) then
          for _, l in ipairs(sorted_keys(lim)) do
            local key = "deploy.resources.limits." .. l
            if l == "memory" then set(cx, comp, "memory", size_value(lim[l]), key, lim[l])
            elseif l == "cpus" then set(cx, comp, "cpus", cpus_value(comp, lim[l]), key, lim[l])
            else unsupported(cx, comp, key, lim[l]) end
          end
        else
          unsupported(cx, comp, "deploy.resources." .. r, lim)
        end
      end
    elseif k ~= "mode" or x ~= "replicated" then
      unsupported(cx, comp, "deploy." .. k, x)
    end
  end
end

function H.scale(cx, comp, v) set(cx, comp, "scale", math.tointeger(tonumber(v)) or v, "scale", v) end
function H.mem_limit(cx, comp, v) set(cx, comp, "memory", size_value(v), "mem_limit", v) end
function H.cpus(cx, comp, v) set(cx, comp, "cpus", cpus_value(comp, v), "cpus", v) end
function H.shm_size(_, comp, v) comp.fields.shm_size = size_value(v) end

function H.working_dir(_, comp, v) comp.fields.working_dir = need_string(comp, "working_dir", v) end
function H.user(_, comp, v) comp.fields.user = need_string(comp, "user", v) end
function H.hostname(_, comp, v) comp.fields.hostname = need_string(comp, "hostname", v) end
function H.stop_signal(_, comp, v) comp.fields.stop_signal = need_string(comp, "stop_signal", v) end
function H.stop_grace_period(_, comp, v) comp.fields.stop_grace = dur_text(comp, "stop_grace_period", v) end

local function boolean_field(field)
  return function(_, comp, v)
    local b = bool_of(v)
    if b == nil then
      fatal(string.format("service %s: '%s' must be true or false, got %s", comp.orig, field, compact(v)))
    end
    comp.fields[field] = b
  end
end
H.init = boolean_field("init")
H.read_only = boolean_field("read_only")

function H.cap_add(_, comp, v) comp.fields.cap_add = string_list(comp, "cap_add", v) end
function H.cap_drop(_, comp, v) comp.fields.cap_drop = string_list(comp, "cap_drop", v) end

function H.labels(cx, comp, v)
  local out = {}
  if is_map(v) then
    for k, x in pairs(v) do out[k] = x == NULL and "" or need_string(comp, "labels", x) end
  else
    for _, item in ipairs(string_list(comp, "labels", v)) do
      local k, x = item:match("^([^=]+)=(.*)$")
      if k then out[k] = x else out[item] = "" end
    end
  end
  for _, k in ipairs(sorted_keys(out)) do
    if k == owner.KEY or k:sub(1, 3) == "mw." then
      partial(cx, comp, "labels." .. k, out[k], "the label is reserved for mw")
      out[k] = nil
    end
  end
  if next(out) then comp.fields.labels = out end
end

function H.extra_hosts(_, comp, v)
  local out = {}
  local function add(h, ip)
    ip = ip:match("^%[(.*)%]$") or ip
    out[#out + 1] = h .. ":" .. ip
  end
  if is_map(v) then
    for _, h in ipairs(sorted_keys(v)) do
      local ips = v[h]
      if type(ips) == "table" then
        for _, ip in ipairs(ips) do add(h, need_string(comp, "extra_hosts", ip)) end
      else
        add(h, need_string(comp, "extra_hosts", ips))
      end
    end
  else
    for _, item in ipairs(string_list(comp, "extra_hosts", v)) do
      local h, ip = item:match("^([^:=]+)[:=](.+)$")
      if not h then fatal(string.format("service %s: bad extra_hosts entry %s", comp.orig, compact(item))) end
      add(h, ip)
    end
  end
  if #out > 0 then comp.fields.extra_hosts = out end
end

function H.ulimits(_, comp, v)
  if not is_map(v) then fatal(string.format("service %s: 'ulimits' must be a mapping", comp.orig)) end
  local out = {}
  for k, x in pairs(v) do
    if is_map(x) then
      out[k] = ordered { { "soft", math.tointeger(tonumber(x.soft)) or x.soft },
                         { "hard", math.tointeger(tonumber(x.hard)) or x.hard } }
    else
      out[k] = math.tointeger(tonumber(x)) or x
    end
  end
  comp.fields.ulimits = out
end

-- Names ---------------------------------------------------------------------------------------

local function sanitize(name)
  local s = name:lower():gsub("[^a-z0-9_-]", "-"):gsub("^[^a-z0-9]+", "")
  s = s:sub(1, 63)
  return s ~= "" and s or "service"
end

local function project_name(cx, compose)
  if compose.name ~= nil and compose.name ~= NULL then
    local n = str_of(compose.name) or ""
    if n:find("^[a-z0-9][a-z0-9_.-]*$") and #n <= 63 then return n end
    local s = n:lower():gsub("[^a-z0-9_-]", ""):gsub("^[^a-z0-9]+", ""):sub(1, 63)
    if s == "" then fatal("the compose file's name " .. compact(n) .. " cannot be a stack name") end
    warn(cx, string.format("project name %s becomes stack name '%s'", compact(n), s))
    return s
  end
  local env_name = lookup(cx, "COMPOSE_PROJECT_NAME")
  local base = env_name or basename(cx.dir)
  local s = base:lower():gsub("[^a-z0-9_-]", ""):gsub("^[^a-z0-9]+", ""):sub(1, 63)
  return s ~= "" and s or "stack"
end

-- The top level -------------------------------------------------------------------------------

local TOP_KEYS = { version = true, name = true, services = true, volumes = true, networks = true,
                   secrets = true }

local function top_notes(cx, compose)
  local notes = {}
  local function add(kind, name, key, value, why)
    notes[#notes + 1] = string.format("%s %s: %s: %s  (no equivalent in mw%s)", kind, name, key, compact(value),
      why and ("; " .. why) or "")
    warn(cx, string.format("%s '%s': '%s' has no equivalent%s (kept as a comment)", kind, name, key,
      why and (": " .. why) or ""))
  end
  for _, kind in ipairs { "volumes", "networks" } do
    local defs = compose[kind]
    if defs ~= nil and defs ~= NULL then
      if not is_map(defs) then fatal("top-level '" .. kind .. "' must be a mapping") end
      local single = kind == "volumes" and "volume" or "network"
      for _, n in ipairs(sorted_keys(defs)) do
        local d = defs[n]
        if is_map(d) then
          for _, k in ipairs(sorted_keys(d)) do
            local x = d[k]
            if k == "external" and bool_of(x) then
              add(single, n, k, x, single == "volume"
                and "mw uses its own volume <stack>_" .. n .. ", not an existing one"
                or "mw creates and labels its own networks")
            elseif k == "name" then
              add(single, n, k, x, single == "volume" and "mw names it <stack>_" .. n or nil)
            elseif not (k == "driver" and (x == "local" or x == "bridge"))
                and not (k == "external" and bool_of(x) == false) then
              add(single, n, k, x)
            end
          end
        end
      end
    end
  end
  local secrets = compose.secrets
  if secrets ~= nil and secrets ~= NULL then
    if not is_map(secrets) then fatal("top-level 'secrets' must be a mapping") end
    for _, n in ipairs(sorted_keys(secrets)) do
      local d = secrets[n]
      if is_map(d) then
        for _, k in ipairs(sorted_keys(d)) do
          if k ~= "file" then add("secret", n, k, d[k], k == "environment" and "mw reads secrets from files" or nil) end
        end
      end
    end
  end
  for _, k in ipairs(sorted_keys(compose)) do
    if not TOP_KEYS[k] then
      notes[#notes + 1] = string.format("%s: %s  (no equivalent in mw%s)", k, compact(compose[k]),
        k:sub(1, 2) == "x-" and "; an extension field" or "")
      warn(cx, string.format("top-level '%s' has no equivalent (kept as a comment)", k))
    end
  end
  return notes
end

local function wrap(text, prefix, width)
  local lines, cur = {}, prefix
  for word in text:gmatch("%S+") do
    if #cur + #word + 1 > width and cur ~= prefix then
      lines[#lines + 1] = cur
      cur = prefix
    end
    cur = cur .. (cur == prefix and "" or " ") .. word
  end
  lines[#lines + 1] = cur
  return table.concat(lines, "\n")
end

local function service(cx, orig, name, svc)
  if not is_map(svc) then fatal(string.format("service %s must be a mapping, got %s", orig, compact(svc))) end
  -- A key set to null is a key not given, for compose as here.
  local given = {}
  for k, v in pairs(svc) do if v ~= NULL then given[k] = v end end
  svc = given
  local comp = { orig = orig, name = name, fields = {}, notes = {}, svc = svc }
  if svc.image == nil and svc.build == nil then
    fatal(string.format("service %s has neither 'image' nor 'build'%s", orig,
      svc.extends and " (it uses 'extends', which mw import does not follow)" or ""))
  end
  -- build before image: a remote build context falls back to the image.
  if svc.build ~= nil then H.build(cx, comp, svc.build, svc) end
  for _, k in ipairs(sorted_keys(svc)) do
    local v = svc[k]
    if k ~= "build" then
      local h = H[k]
      if h then
        h(cx, comp, v, svc)
      else
        unsupported(cx, comp, k, v, k:sub(1, 2) == "x-" and "an extension field" or nil)
      end
    end
  end
  for _, t in ipairs(comp.tmpfs or {}) do add_volume(comp, t) end
  return comp
end

local function render_component(comp)
  local lines = { "    " .. lua_key(comp.name) .. " = {" }
  if comp.name ~= comp.orig then lines[#lines + 1] = "      -- compose service " .. compact(comp.orig) end
  for _, f in ipairs(FIELD_ORDER) do
    local v = comp.fields[f]
    if v ~= nil then lines[#lines + 1] = "      " .. f .. " = " .. render(v, 6) .. "," end
  end
  for _, n in ipairs(comp.notes) do
    lines[#lines + 1] = "      -- compose: " .. n:gsub("[\r\n]", " ")
  end
  lines[#lines + 1] = "    },"
  return table.concat(lines, "\n")
end

local function convert(compose, opts, warnings)
  local cx = {
    warnings = warnings, warned = {}, uses = {},
    dir = opts.dir or ".", out_dir = opts.out_dir or opts.dir or ".",
    baked = {}, read_paths = {},
  }
  local read = opts.read or read_file
  cx.read = function(p)
    local text, err = read(p)
    if text then cx.read_paths[#cx.read_paths + 1] = p end
    return text, err
  end
  local environ = opts.env
  cx.getenv = environ and function(k) return environ[k] end or os.getenv
  cx.same_dir = normpath(cx.dir) == normpath(cx.out_dir)
  if not cx.same_dir then
    cx.dir, cx.out_dir = absolute(cx.dir, opts.cwd), absolute(cx.out_dir, opts.cwd)
  end

  if not is_table(compose) or compose == NULL or not is_map(compose) or next(compose) == nil then
    local what = compose == NULL and "an empty document"
      or type(compose) == "table" and (next(compose) == nil and "an empty mapping" or "a list")
      or ("a " .. type(compose))
    fatal("not a compose file: expected a mapping with 'services', got " .. what)
  end
  local services = compose.services
  if services == nil or services == NULL or (is_table(services) and next(services) == nil) then
    fatal("no services: a compose file needs a 'services' mapping with at least one service")
  end
  if not is_map(services) then fatal("'services' must be a mapping of name: service") end

  -- .env beside the compose file feeds interpolation (the process environment wins).
  cx.dotenv, cx.dotenv_path = {}, join(cx.dir, ".env")
  local dot = cx.read(cx.dotenv_path)
  if dot then
    local entries, err = parse_dotenv(dot)
    if not entries then fatal(".env: " .. err) end
    for _, e in ipairs(entries) do if e[2] ~= nil then cx.dotenv[e[1]] = e[2] end end
  end
  compose = interpolate_tree(cx, compose, "")
  services = compose.services

  cx.volumes = is_map(compose.volumes) and compose.volumes or {}
  cx.secrets = is_map(compose.secrets) and compose.secrets or {}

  local names, taken, order = {}, {}, sorted_keys(services)
  for _, orig in ipairs(order) do
    local n = sanitize(orig)
    if n ~= orig or taken[n] then
      local base, i = n, 2
      while taken[n] do n = base:sub(1, 60) .. "-" .. i; i = i + 1 end
      warn(cx, string.format("service '%s' becomes component '%s' (component names are lowercase letters, " ..
        "digits, '_' and '-')", orig, n))
    end
    taken[n] = true
    names[orig] = n
  end

  local comps = {}
  for _, orig in ipairs(order) do comps[#comps + 1] = service(cx, orig, names[orig], services[orig]) end
  table.sort(comps, function(a, b) return a.name < b.name end)
  local by_name = {}
  for _, c in ipairs(comps) do by_name[c.orig] = c end

  -- depends_on last: "healthy" needs the other side's heartbeat, known only now.
  for _, c in ipairs(comps) do
    if c.deps and #c.deps > 0 then
      local all_started, t, list = true, {}, {}
      for _, d in ipairs(c.deps) do
        local target = by_name[d.name]
        local n = names[d.name] or sanitize(d.name)
        if d.cond == "healthy" and target and not target.fields.heartbeat then
          note(c, string.format("depends_on %s: condition service_healthy  (%s has no healthcheck mw can run; " ..
            "using \"started\")", d.name, d.name))
          warn(cx, string.format("service %s: depends on %s being healthy, but %s has no healthcheck mw can run; " ..
            "using \"started\"", c.orig, d.name, d.name))
          d.cond = "started"
        end
        if d.cond ~= "started" then all_started = false end
        t[n] = d.cond
        list[#list + 1] = n
      end
      c.fields.depends_on = all_started and list or t
    end
  end

  local notes = top_notes(cx, compose)
  local stack_name = project_name(cx, compose)

  local out = {}
  out[#out + 1] = "-- Imported from " .. (opts.file or "compose.yaml") .. " by `mw import`; check it with `mw check`."
  out[#out + 1] = "-- What mw has no equivalent for is kept in comments marked \"compose:\"."
  out[#out + 1] = "-- Named volumes are <stack>_<name> on the engine, as compose names them, so this stack"
  out[#out + 1] = "-- uses the volumes of compose project " .. quote(stack_name) .. "."
  local defaulted = {}
  for _, c in ipairs(comps) do if c.fields.restart == nil then defaulted[#defaulted + 1] = c.name end end
  if #defaulted > 0 then
    out[#out + 1] = wrap("Without 'restart' compose never restarts a service; here " .. table.concat(defaulted, ", ") ..
      " get" .. (#defaulted == 1 and "s" or "") .. " mw's default policy (on_failure with backoff).", "-- ", 96)
  end
  if compose.version ~= nil then
    out[#out + 1] = "-- compose: version: " .. compact(compose.version) .. "  (informational; compose ignores it too)"
  end
  local requires = {}
  if cx.uses.policy then requires[#requires + 1] = 'local policy  = require "mw.policy"' end
  if cx.uses.backoff then requires[#requires + 1] = 'local backoff = require "mw.backoff"' end
  if #requires > 0 then
    out[#out + 1] = ""
    for _, r in ipairs(requires) do out[#out + 1] = r end
  end
  out[#out + 1] = ""
  for _, n in ipairs(notes) do out[#out + 1] = "-- compose: " .. n:gsub("[\r\n]", " ") end
  if #notes > 0 then out[#out + 1] = "" end
  out[#out + 1] = "return {"
  out[#out + 1] = "  name = " .. quote(stack_name) .. ","
  out[#out + 1] = "  components = {"
  for i, c in ipairs(comps) do
    if i > 1 then out[#out + 1] = "" end
    out[#out + 1] = render_component(c)
  end
  out[#out + 1] = "  },"
  out[#out + 1] = "}"
  local from = {}
  for i, b in ipairs(cx.baked) do
    local list = {}
    for n in pairs(b.names) do list[#list + 1] = n end
    table.sort(list)
    from[i] = { path = b.path, names = list }
  end
  return table.concat(out, "\n") .. "\n", { env_values = from, read = cx.read_paths }
end

-- import.convert(compose_table, opts) -> lua_source, warnings, sources | nil, message, warnings
-- sources: read (the env files read: .env and env_file paths), env_values ({ path, names }
-- for each env file whose values are written into the source).
-- opts: file (name for the header), dir (the compose file's directory), out_dir (where the
-- stack file goes; default dir), env (a table instead of the process environment), read
-- (function(path) -> text | nil, err, for env files), cwd (for relative dirs).
function M.convert(compose, opts)
  local warnings = {}
  local ok, src, sources = pcall(convert, compose, opts or {}, warnings)
  if ok then return src, warnings, sources end
  if getmetatable(src) == Fatal then return nil, src.msg, warnings end
  error(src, 0)
end

M.parse_dotenv = parse_dotenv
M.go_seconds = go_seconds

-- The command -----------------------------------------------------------------------------------

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

function M.main(args, cli)
  local function err(msg) io.stderr:write("mw import: ", msg, "\n") end
  local o, rest = cli.parse(args, { o = "value", output = "value", force = true })
  if not o then err(rest .. " (" .. USAGE .. ")") return 2 end
  local file = rest[1]
  if not file or #rest > 1 then err(USAGE) return 2 end
  local out = o.o or o.output
  if o.o and o.output then err("give -o or --output, not both") return 2 end
  if out and exists(out) and not o.force then
    err(out .. " already exists (use --force to overwrite it)")
    return 2
  end

  local text, rerr = read_file(file)
  if not text then err("cannot read " .. tostring(rerr)) return 2 end
  local doc, yerr = yaml.decode(text)
  if doc == nil then err(file .. ": " .. yerr) return 2 end

  local here = cwd()
  local dir = absolute(dirname(file), here)
  local out_path = out and absolute(out, here) or join(dir, "stack.lua")
  local shown = out or (dirname(file) == "." and "stack.lua" or (dirname(file) .. "/stack.lua"))
  local src, cerr, third = M.convert(doc, {
    file = basename(file), dir = dir, out_dir = dirname(out_path), cwd = here,
  })
  local warnings, sources = third, nil
  if src then warnings, sources = cerr, third end
  for _, w in ipairs(warnings) do err(w) end
  if not src then err(file .. ": " .. cerr) return 2 end

  local stack = require "mw.stack"
  local s, lerr = stack.load(shown, { source = src, cwd = here })
  if not s then
    -- compose creates a missing bind mount source; mw refuses one, so say what to do.
    local hint = lerr:find("bind mount source .* does not exist") and
      " (compose would create it; mw does not: create it first)" or ""
    err("the result would not pass mw check: " .. lerr .. hint)
    return 2
  end

  local function display(p)
    if p:sub(1, #here + 1) == here .. "/" then return p:sub(#here + 2) end
    return p
  end
  -- Values from env files end up in the stack file as text: say which, by name only.
  for _, b in ipairs(sources.env_values) do
    err(string.format("values from %s written into %s: %s", display(b.path), out or "the output",
      table.concat(b.names, ", ")))
  end

  if not out then
    io.stdout:write(src)
    return 0
  end
  -- The stack file may hold what the compose and env files hold, so it is no more readable than
  -- the most private of them: 0644 masked by each one's mode (a 0600 .env gives 0600; the
  -- umask may narrow it further). Its owner keeps read and write, to edit it and import over it.
  local fs = require "mw.fs"
  local mode, private = 420, {}
  local read = { absolute(file, here) }
  for _, p in ipairs(sources.read) do read[#read + 1] = p end
  for _, p in ipairs(read) do
    local st = fs.stat(fs.realpath(p) or p)
    if st and (mode & st.mode) | 384 ~= mode | 384 then
      mode = mode & st.mode
      private[#private + 1] = display(p)
    end
  end
  mode = mode | 384
  local ok, werr = fs.write_atomic(out, src, mode)
  if not ok then err("cannot write " .. out .. ": " .. tostring(werr)) return 1 end
  err(string.format("wrote %s: %d component%s, %d warning%s%s", out, #s.order, #s.order == 1 and "" or "s",
    #warnings, #warnings == 1 and "" or "s",
    mode ~= 420 and string.format("; mode %04o, as private as %s", mode, table.concat(private, ", ")) or ""))
  return 0
end

return M
