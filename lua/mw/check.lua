-- The pieces stack validation is built from: failures that carry the path of the bad value,
-- values quoted for one-line messages, and checkers of plain values (text, numbers, lists,
-- maps, words, sizes, durations, addresses). Each checker returns the normalized value or fails.
local sandbox  = require "mw.sandbox"
local duration = require "mw.duration"
local backoff  = require "mw.backoff"
local policy   = require "mw.policy"
local secret   = require "mw.secret"
local mwtext   = require "mw.text"

local check = {}

-- Validation runs outside any budget (it is mw's code), so what a stack file returns is
-- bounded before it is walked: entries in one table, and table entries in all.
-- A table shared by many components counts at each use, because each use is validated.
local MAX_ENTRIES = 10000
local MAX_VALIDATED = 1000000

-- Text for messages -------------------------------------------------------------------------

local printable, cut = mwtext.printable, mwtext.cut

local function keyname(k)
  if type(k) ~= "string" then return "(" .. type(k) .. ")" end
  return cut(printable(k), 60)
end

local function show(v)
  if secret.is(v) then return "a secret" end
  if type(v) == "string" then return '"' .. cut(printable(v), 60):gsub('"', '\\"') .. '"' end
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

local function typeof(v)
  if secret.is(v) then return "a secret" end
  if policy.is(v) then return "a policy" end
  if backoff.is(v) then return "a backoff" end
  if type(v) == "table" then return "table" end
  return type(v)
end

-- Paths ----------------------------------------------------------------------------------------

local fs = require "mw.fs"

-- What is at p, following links: "file", "dir", "socket", "fifo", "char", "block" or nil. A stat
-- opens nothing: a FIFO is not waited on and no byte of a secret is read.
local function file_kind(p)
  local st = fs.stat(p, true)
  return st and st.type, st
end

local function is_dir(p) return file_kind(p) == "dir" end

local KINDS = { fifo = "a FIFO", char = "a character device", block = "a block device", socket = "a socket",
                dir = "a directory", file = "a regular file", other = "a special file" }

-- Caps on the files a stack names that mw reads or hands on whole (README "Limits").
local MiB = 1024 * 1024
check.MAX_SECRET = MiB        -- Kubernetes' cap on a Secret; real ones are keys and passwords
check.MAX_CONFIG = MiB        -- as a secret: a config file is read whole to hash it
check.MAX_DOCKERFILE = MiB    -- read whole when it lies outside its build context
check.MAX_IGNORE = MiB        -- core/tar.c has the same cap for the .dockerignore it reads

-- Failures ----------------------------------------------------------------------------------

-- Validation failures travel as tables so the loader tells them from bugs in this file.
local Failure = {}

local function fail(path, msg, extra)
  error(setmetatable({ path = path, msg = msg, extra = extra }, Failure), 0)
end

-- Entries of the table being validated now and in all (reset by validate).
local validated = 0
local function bounded(path, t)
  local n = 0
  for _ in next, t do
    n = n + 1
    if n > MAX_ENTRIES then fail(path, string.format("has more than %d entries", MAX_ENTRIES)) end
  end
  validated = validated + n
  if validated > MAX_VALIDATED then
    fail(path, string.format("the stack is too large to validate (more than %d table entries in all, " ..
      "a table shared by components counted at each use)", MAX_VALIDATED))
  end
end

local function sub(path, k)
  local p = table.move(path, 1, #path, 1, {})
  p[#p + 1] = k
  return p
end

local function where(path)
  local comp, first = nil, 1
  if path[1] == "components" and path[2] ~= nil then comp, first = path[2], 3 end
  local field = ""
  for i = first, #path do
    local k = path[i]
    if type(k) == "number" then
      field = field .. "[" .. k .. "]"
    else
      field = field .. (field == "" and "" or ".") .. keyname(k)
    end
  end
  local parts = {}
  if comp then parts[#parts + 1] = "component '" .. keyname(comp) .. "'" end
  if field ~= "" then parts[#parts + 1] = "field '" .. field .. "'" end
  return table.concat(parts, ": ")
end

-- Starts the count of validated entries again (one stack at a time).
function check.reset() validated = 0 end

-- Value checkers: each returns the normalized value or fails -----------------------------------

-- A secret is only ever an env value: there mw hands the value to the engine alone. Anywhere
-- else it would be mangled (a build arg encodes as {}, a label as "<secret>") or, taken as a
-- table, read as empty (heartbeat = secret "x" would be the default heartbeat); and build args
-- stay in the image's history, labels and commands in every inspect.
local SECRET_HERE = "a secret is accepted only as an env value (mw cannot keep it secret here)"

local function no_secret(path, v)
  if secret.is(v) then fail(path, SECRET_HERE) end
end

local function fields(path, t, allowed)
  no_secret(path, t)
  bounded(path, t)
  local set = {}
  for _, f in ipairs(allowed) do set[f] = true end
  local bad = {}
  for k in next, t do
    if not set[k] then bad[#bad + 1] = k end
  end
  if #bad == 0 then return end
  -- Report the same key every time whatever order next() gives.
  table.sort(bad, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  local k = bad[1]
  if type(k) == "number" then
    fail(path, string.format("unexpected list item [%s] (fields are written name = value)", tostring(k)))
  elseif type(k) ~= "string" then
    fail(path, "unexpected key of type " .. type(k))
  end
  local hint = sandbox.suggest(k, allowed)
  fail(path, string.format("unknown field '%s'%s", keyname(k),
    hint and string.format(" (did you mean '%s'?)", hint) or ""), k)
end

local function must(path, v, what)
  no_secret(path, v)
  fail(path, string.format("must be %s, got %s", what, typeof(v)))
end

local function text(path, v, what)
  if type(v) ~= "string" then must(path, v, what or "a string") end
  if not utf8.len(v) then fail(path, "must be valid UTF-8 text, got " .. show(v)) end
  if v:find("%z") then fail(path, "must not contain NUL bytes") end
  return v
end

local function nonempty(path, v, what)
  text(path, v, what)
  if v == "" then fail(path, "must not be empty") end
  return v
end

-- Strings, numbers and booleans become the strings a container sees; a secret only where
-- secret_ok (env values), kept wrapped so it never prints.
local function scalar(path, v, secret_ok)
  local tv = type(v)
  if tv == "string" then return text(path, v) end
  if secret_ok and secret.is(v) then return v end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then fail(path, "must be a finite number") end
    local i = math.tointeger(v)
    if i then return string.format("%d", i) end
    return string.format("%.14g", v)
  end
  must(path, v, "a string, number or boolean")
end

local function boolean(path, v)
  if type(v) ~= "boolean" then must(path, v, "true or false") end
  return v
end

local function integer(path, v, lo, hi)
  local i = type(v) == "number" and math.tointeger(v) or nil
  if not i then
    if type(v) == "number" then fail(path, "must be a whole number, got " .. show(v)) end
    must(path, v, "a whole number")
  end
  if i < lo or i > hi then fail(path, string.format("must be between %d and %d, got %d", lo, hi, i)) end
  return i
end

local function dur(path, v, positive)
  local s, err = duration.parse(v)
  if not s then fail(path, err) end
  if positive and s <= 0 then fail(path, "must be a duration > 0") end
  return s
end

local function bytes(path, v)
  if type(v) == "number" then
    local i = math.tointeger(v)
    if not i or i < 0 then fail(path, "must be a whole number of bytes >= 0 or a size like \"512m\"") end
    return i
  end
  if type(v) ~= "string" then must(path, v, "a size like \"512m\" or \"1g\", or a number of bytes") end
  local num, unit = v:lower():match("^(%d+%.?%d*)%s*([kmgt]?)i?b?$")
  if not num then fail(path, "bad size " .. show(v) .. " (use e.g. \"64m\", \"512m\", \"1g\")") end
  local mult = ({ [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 })[unit]
  return math.floor(tonumber(num) * mult)
end

-- List items in order, then string keys sorted; holes and odd keys fail. Returns two lists of
-- {key, value}.
local function entries(path, t)
  no_secret(path, t)
  bounded(path, t)
  local items, named = {}, {}
  for k, v in next, t do
    if math.type(k) == "integer" and k >= 1 then
      items[#items + 1] = { k, v }
    elseif type(k) == "string" then
      named[#named + 1] = { k, v }
    else
      fail(path, "unexpected key of type " .. type(k))
    end
  end
  table.sort(items, function(a, b) return a[1] < b[1] end)
  table.sort(named, function(a, b) return a[1] < b[1] end)
  for i, e in ipairs(items) do
    if e[1] ~= i then fail(path, string.format("list has a hole before item [%d]", e[1])) end
  end
  return items, named
end

local function list(path, v, what)
  if type(v) ~= "table" then must(path, v, what or "a list") end
  local items, named = entries(path, v)
  if #named > 0 then
    fail(path, string.format("must be a list %s, but has a field '%s'", what and ("(" .. what .. ")") or "",
      keyname(named[1][1])))
  end
  return items
end

local function map(path, v, what)
  if type(v) ~= "table" then must(path, v, what or "a table of name = value") end
  local items, named = entries(path, v)
  if #items > 0 then
    fail(path, string.format("must be a table of name = value, but has a list item [%d]", items[1][1]))
  end
  return named
end

-- "a b 'c d'" -> {"a", "b", "c d"}: the shell's word splitting, without expansion.
local function split_words(s)
  local words, cur, i, n = {}, nil, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:find("%s") then
      if cur then words[#words + 1] = cur; cur = nil end
    elseif c == "'" then
      local e = s:find("'", i + 1, true)
      if not e then return nil, "unterminated ' quote" end
      cur = (cur or "") .. s:sub(i + 1, e - 1)
      i = e
    elseif c == '"' then
      local buf, j = {}, i + 1
      while true do
        local d = s:sub(j, j)
        if d == "" then return nil, "unterminated \" quote" end
        if d == '"' then break end
        if d == "\\" and j < n then j = j + 1; d = s:sub(j, j) end
        buf[#buf + 1] = d
        j = j + 1
      end
      cur = (cur or "") .. table.concat(buf)
      i = j
    elseif c == "\\" and i < n then
      cur = (cur or "") .. s:sub(i + 1, i + 1)
      i = i + 1
    else
      cur = (cur or "") .. c
    end
    i = i + 1
  end
  if cur then words[#words + 1] = cur end
  return words
end

local function words(path, v)
  if type(v) == "string" then
    text(path, v)
    local w, err = split_words(v)
    if not w then fail(path, err .. " in " .. show(v)) end
    if #w == 0 then fail(path, "must not be empty") end
    return w
  end
  if type(v) ~= "table" then must(path, v, "a string or a list of strings") end
  local out = {}
  for _, e in ipairs(list(path, v, "of strings")) do
    local p = sub(path, e[1])
    out[#out + 1] = type(e[2]) == "number" and scalar(p, e[2]) or text(p, e[2], "a string")
  end
  if #out == 0 then fail(path, "must not be empty") end
  return out
end

local function is_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs { a, b, c, d } do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

local function is_ip(s)
  return is_ipv4(s) or (s:find("^[%x:%.]+$") and s:find(":") and #s <= 45) and true or false
end

local function hostname_ok(s)
  if #s == 0 or #s > 253 then return false end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or not label:find("^[%w]") or not label:find("[%w]$")
        or label:find("[^%w-]") then
      return false
    end
  end
  return true
end

check.Failure = Failure
check.fail = fail
check.bounded = bounded
check.sub = sub
check.where = where
check.keyname = keyname
check.show = show
check.typeof = typeof
check.printable = printable
check.cut = cut
check.file_kind = file_kind
check.is_dir = is_dir
check.KINDS = KINDS
check.SECRET_HERE = SECRET_HERE
check.no_secret = no_secret
check.fields = fields
check.must = must
check.text = text
check.nonempty = nonempty
check.scalar = scalar
check.boolean = boolean
check.integer = integer
check.dur = dur
check.bytes = bytes
check.entries = entries
check.list = list
check.map = map
check.split_words = split_words
check.words = words
check.is_ipv4 = is_ipv4
check.is_ip = is_ip
check.hostname_ok = hostname_ok

return check
