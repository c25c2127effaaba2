-- Loads a stack file in its sandbox and turns it into a validated, normalized stack.
local sandbox  = require "mw.sandbox"
local duration = require "mw.duration"
local backoff  = require "mw.backoff"
local policy   = require "mw.policy"
local secret   = require "mw.secret"
local owner    = require "mw.owner"
local fields_table = require "mw.fields"

local stack = {}

local BUDGET = { instructions = 1e8, seconds = 2 }
local MAX_MESSAGE = 400
-- Validation runs outside any budget (it is mw's code), so what a stack file returns is
-- bounded before it is walked: entries in one table, components, and table entries in all.
-- A table shared by many components counts at each use, because each use is validated.
local MAX_ENTRIES = 10000
local MAX_COMPONENTS = 1000
local MAX_VALIDATED = 1000000

-- The seed's heartbeat: what `heartbeat = true` means and what a partial table falls back to.
local HEARTBEAT_DEFAULTS = { port = 8089, path = "/debug/vars", interval = 0.5, timeout = 1,
                             misses = 3, grace = 10 }
stack.HEARTBEAT_DEFAULTS = HEARTBEAT_DEFAULTS

local TOP_FIELDS = { "name", "components" }
-- The component fields, their defaults and what each feeds: lua/mw/fields.lua.
local COMPONENT_FIELDS = fields_table.names

local CAPABILITIES = {}
for c in ([[ALL AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN
  DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE
  MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP
  SETGID SETPCAP SETUID SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE
  SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG SYSLOG WAKE_ALARM]]):gmatch("%S+") do
  CAPABILITIES[c] = true
end

local SIGNALS = {}
for s in ([[HUP INT QUIT ILL TRAP ABRT IOT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT
  CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO POLL PWR SYS RTMIN RTMAX]]):gmatch("%S+") do
  SIGNALS[s] = true
end

local ULIMITS = {}
for u in ([[core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime
  sigpending stack]]):gmatch("%S+") do
  ULIMITS[u] = true
end

-- Text for messages -------------------------------------------------------------------------

-- Keeps valid UTF-8 and turns control characters and stray bytes into \xNN, so whatever a
-- stack file holds, a message stays one printable line.
local function printable(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local a = s:find("[%c\128-\255\\]", i)
    if not a then out[#out + 1] = s:sub(i); break end
    out[#out + 1] = s:sub(i, a - 1)
    local c = s:byte(a)
    local len = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2 or 1
    local ch = s:sub(a, a + len - 1)
    if c >= 0x80 and len > 1 and utf8.len(ch) == 1 then
      out[#out + 1] = ch
      i = a + len
    else
      out[#out + 1] = c == 92 and "\\" or string.format("\\x%02x", c)
      i = a + 1
    end
  end
  return table.concat(out)
end

local function cut(s, n)
  if #s <= n then return s end
  -- Back off to a character boundary so the cut does not leave half a UTF-8 sequence.
  local e = n
  while e > 0 and (s:byte(e + 1) or 0) & 0xC0 == 0x80 do e = e - 1 end
  return s:sub(1, e) .. "..."
end

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

local paths = require "mw.path"
local fs = require "mw.fs"
local normpath, join, dirname, relative = paths.normalize, paths.join, paths.dirname, paths.relative

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
stack.MAX_SECRET = MiB        -- Kubernetes' cap on a Secret; real ones are keys and passwords
stack.MAX_DOCKERFILE = MiB    -- read whole when it lies outside its build context
stack.MAX_IGNORE = MiB        -- core/tar.c has the same cap for the .dockerignore it reads

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

-- Finding the line: a heuristic over the source text -----------------------------------------

-- Replaces comments with spaces (keeping newlines) so a key named in a comment is not found.
local function blank_comments(src)
  local out, i, n = {}, 1, #src
  local function blank(s) return (s:gsub("[^\n]", " ")) end
  while i <= n do
    local a = src:find("[-\"'%[]", i)
    if not a then out[#out + 1] = src:sub(i); break end
    out[#out + 1] = src:sub(i, a - 1)
    local c = src:sub(a, a)
    if c == "-" and src:sub(a + 1, a + 1) == "-" then
      local eq = src:match("^%[(=*)%[", a + 2)
      local e
      if eq then
        e = select(2, src:find("]" .. eq .. "]", a + 2, true)) or n
      else
        e = (src:find("\n", a, true) or n + 1) - 1
      end
      out[#out + 1] = blank(src:sub(a, e))
      i = e + 1
    elseif c == "[" and src:find("^%[=*%[", a) then
      local eq = src:match("^%[(=*)%[", a)
      local e = select(2, src:find("]" .. eq .. "]", a, true)) or n
      out[#out + 1] = src:sub(a, e)
      i = e + 1
    elseif c == '"' or c == "'" then
      local j = a + 1
      while true do
        local b = src:find("[\\\n" .. c .. "]", j)
        if not b then j = n; break end
        if src:sub(b, b) == "\\" then j = b + 2 else j = b; break end
      end
      out[#out + 1] = src:sub(a, j)
      i = j + 1
    else
      out[#out + 1] = c
      i = a + 1
    end
  end
  return table.concat(out)
end

local function find_key(text, key, init, limit)
  if type(key) ~= "string" or #key > 200 or key == "" then return nil end
  local k = key:gsub("[%p%c]", "%%%0")
  local a = key:find("^[%a_][%w_]*$") and text:find("%f[%w_]" .. k .. "%s*=%f[^=]", init)
  local b = text:find("%[%s*[\"']" .. k .. "[\"']%s*%]%s*=", init)
  local p = (a and b) and math.min(a, b) or a or b
  if p and limit and p >= limit then return nil end
  return p
end

local function line_at(text, pos)
  local _, n = text:sub(1, pos):gsub("\n", "")
  return n + 1
end

-- Lua lets a table constructor give one key twice and keeps the last, so a component defined
-- twice, or a field given twice, would vanish silently. This walks the text (comments blanked)
-- keeping a stack of table constructors and code blocks, and returns the first key a
-- constructor repeats: key, first position, second position, the constructor's own key and
-- the key of the constructor around it.
local BLOCK_OPEN = { ["function"] = true, ["if"] = true, ["do"] = true, ["repeat"] = true }
local BLOCK_CLOSE = { ["end"] = true, ["until"] = true }
local KEY_BEFORE = { ["{"] = true, [","] = true, [";"] = true }

local function repeated_key(text)
  local open, i = {}, 1
  local prev, last_key
  local function key(k, pos)
    local top = open[#open]
    local first = top.keys[k]
    if first then return true, k, first, pos, top.name, open[#open - 1] and open[#open - 1].name end
    top.keys[k] = pos
    last_key = k
  end
  while true do
    i = text:find("%S", i)
    if not i then return nil end
    local c = text:sub(i, i)
    local top = open[#open]
    local in_table = top and top.kind == "table" and KEY_BEFORE[prev]
    if c:find("[%a_]") then
      local _, e = text:find("^[%a_][%w_]*", i)
      local word = text:sub(i, e)
      if BLOCK_OPEN[word] then
        open[#open + 1] = { kind = "block" }
      elseif BLOCK_CLOSE[word] then
        if not top or top.kind ~= "block" then return nil end
        open[#open] = nil
      elseif in_table and text:find("^%s*=[^=]", e + 1) then
        local found, a, b, d, f, g = key(word, i)
        if found then return a, b, d, f, g end
      end
      prev, i = word, e + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while true do
        local b = text:find("[\\\n" .. c .. "]", j)
        if not b then return nil end
        if text:sub(b, b) == "\\" then j = b + 2 else j = b; break end
      end
      prev, i = "string", j + 1
    elseif c == "[" and text:find("^%[=*%[", i) then
      local eq = text:match("^%[(=*)%[", i)
      local _, e = text:find("]" .. eq .. "]", i, true)
      if not e then return nil end
      prev, i = "string", e + 1
    elseif c == "[" and in_table then
      local _, e, k = text:find("^%[%s*\"([^\"\\\n]*)\"%s*%]%s*=[^=]", i)
      if not k then _, e, k = text:find("^%[%s*'([^'\\\n]*)'%s*%]%s*=[^=]", i) end
      if k then
        local found, a, b, d, f, g = key(k, i)
        if found then return a, b, d, f, g end
        prev, i = "=", e
      else
        prev, i = "[", i + 1
      end
    elseif c == "{" then
      -- Named by the key just before "=" (components = {...}), if that is what precedes it.
      open[#open + 1] = { kind = "table", keys = {}, name = prev == "=" and last_key or nil }
      prev, last_key, i = "{", nil, i + 1
    elseif c == "}" then
      if not top or top.kind ~= "table" then return nil end
      open[#open] = nil
      prev, i = "}", i + 1
    elseif text:find("^==", i) or text:find("^~=", i) or text:find("^<=", i) or text:find("^>=", i) then
      prev, i = "op", i + 2
    else
      if c ~= "=" then last_key = nil end
      prev, i = c, i + 1
    end
  end
end

-- Looks for the keys of path in order (components, then the component, then the field and
-- its subfields), each after the previous one and, below a component, before the next
-- component. The component is tried where the components table names it and where it is
-- first assigned (local web = {...}); the deeper match wins. Returns nil when the component
-- itself is not found.
local function locate(ctx, path, extra)
  if not ctx.source then return nil end
  ctx.text = ctx.text or blank_comments(ctx.source)
  local text = ctx.text
  local keys = table.move(path, 1, #path, 1, {})
  if extra ~= nil then keys[#keys + 1] = extra end

  local function bound(p, k)
    local limit
    if #ctx.names > 300 then return nil end
    for _, other in ipairs(ctx.names) do
      if other ~= k then
        local q = find_key(text, other, p + 1)
        if q and (not limit or q < limit) then limit = q end
      end
    end
    return limit
  end

  -- Walks keys[from..] starting at pos; returns the last line found and how many were found.
  local function walk(from, pos, limit, line, depth)
    for i = from, #keys do
      local k = keys[i]
      if type(k) == "string" then
        local p = find_key(text, k, pos, limit)
        if not p then break end
        line, depth, pos = line_at(text, p), depth + 1, p + 1
      end
    end
    return line, depth
  end

  if keys[1] ~= "components" or type(keys[2]) ~= "string" then
    local line, depth = walk(1, 1, nil, nil, 0)
    return depth > 0 and line or nil
  end
  local best_line, best_depth
  local after = find_key(text, "components", 1)
  for _, start in ipairs { after and after + 1 or 1, 1 } do
    local p = find_key(text, keys[2], start)
    if p then
      local line, depth = walk(3, p + 1, bound(p, keys[2]), line_at(text, p), 1)
      if not best_depth or depth > best_depth then best_line, best_depth = line, depth end
    end
  end
  return best_line
end

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

-- Component fields ----------------------------------------------------------------------------

local spec = {}

local IMAGE_HINT = ' (use e.g. "nginx:1.25", "redis", "localhost:5000/app:dev")'

function spec.image(_, path, v)
  nonempty(path, v, "a string (an image name such as \"nginx:1.25\")")
  if #v > 255 or not v:find("^[%w][%w._/:@+-]*$") then
    fail(path, "bad image reference " .. show(v) .. IMAGE_HINT)
  end
  local name = v:gsub("@.*$", "")
  local tag = name:match(":([^/:]*)$")
  local repo = tag and name:sub(1, #name - #tag - 1) or name
  if repo == "" or repo ~= repo:lower() then
    fail(path, "bad image reference " .. show(v) .. ": the repository name must be lowercase")
  end
  if tag and not tag:find("^[%w_][%w_.-]*$") then fail(path, "bad image tag in " .. show(v) .. IMAGE_HINT) end
  return v
end

function spec.build(ctx, path, v)
  if type(v) == "string" then v = { context = v } end
  if type(v) ~= "table" then
    must(path, v, "a table { context = \"dir\", dockerfile = ..., args = ..., target = ... } or a directory")
  end
  fields(path, v, { "context", "dockerfile", "args", "target" })
  local context = rawget(v, "context")
  if context == nil then fail(path, "needs 'context' (a directory, relative to the stack file)") end
  nonempty(sub(path, "context"), context)
  local dir = join(ctx.dir, context)
  if not is_dir(dir) then
    fail(sub(path, "context"), "build context " .. show(context) .. " is not a directory (relative to the stack file)")
  end
  local b = { context = dir, args = {} }
  local df = rawget(v, "dockerfile")
  if df ~= nil then nonempty(sub(path, "dockerfile"), df) end
  b.dockerfile = join(dir, df or "Dockerfile")
  local dk, dst = file_kind(b.dockerfile)
  if not dk then
    fail(sub(path, "dockerfile"), string.format("no Dockerfile at %s (relative to the build context)",
      show(df or "Dockerfile")))
  elseif dk ~= "file" then
    fail(sub(path, "dockerfile"), string.format("Dockerfile %s is %s, not a regular file", show(df or "Dockerfile"),
      KINDS[dk] or KINDS.other))
  elseif dst.size > stack.MAX_DOCKERFILE then
    fail(sub(path, "dockerfile"), string.format("Dockerfile %s is larger than 1 MiB", show(df or "Dockerfile")))
  end
  -- Not followed through a link, as the build reads it (core/tar.c).
  local ist = fs.stat(join(dir, ".dockerignore"))
  if ist and ist.type ~= "file" then
    fail(sub(path, "context"), string.format(".dockerignore in build context %s is %s; mw reads only a regular file",
      show(context), ist.type == "link" and "a symbolic link" or KINDS[ist.type] or KINDS.other))
  elseif ist and ist.size > stack.MAX_IGNORE then
    fail(sub(path, "context"), string.format(".dockerignore in build context %s is larger than 1 MiB", show(context)))
  end
  local args = rawget(v, "args")
  if args ~= nil then
    for _, e in ipairs(map(sub(path, "args"), args)) do
      local p = sub(sub(path, "args"), e[1])
      nonempty(p, e[1])
      b.args[e[1]] = scalar(p, e[2])
    end
  end
  local target = rawget(v, "target")
  if target ~= nil then
    nonempty(sub(path, "target"), target)
    if not target:find("^[%w][%w_.-]*$") then fail(sub(path, "target"), "bad build stage name " .. show(target)) end
    b.target = target
  end
  return b
end

function spec.command(_, path, v) return words(path, v) end
function spec.entrypoint(_, path, v) return words(path, v) end

function spec.env(_, path, v)
  local out = {}
  if type(v) ~= "table" then must(path, v, "a table of NAME = value") end
  local items, named = entries(path, v)
  -- The compose list form {"KEY=value"} is accepted too, so imported files stay readable.
  for _, e in ipairs(items) do
    local p = sub(path, e[1])
    local s = text(p, e[2], "a string \"NAME=value\" (or use NAME = value)")
    local k, val = s:match("^([^=]+)=(.*)$")
    if not k then fail(p, "must look like \"NAME=value\", got " .. show(s)) end
    named[#named + 1] = { k, val, p }
  end
  for _, e in ipairs(named) do
    local p = e[3] or sub(path, e[1])
    if not e[1]:find("^[%w_][%w_.-]*$") then
      fail(e[3] or path, "bad variable name '" .. keyname(e[1]) .. "' (use letters, digits, '_', '.', '-')")
    end
    if out[e[1]] then fail(p, "variable '" .. keyname(e[1]) .. "' is set twice") end
    out[e[1]] = scalar(p, e[2], true)
  end
  return out
end

function spec.depends_on(_, path, v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then must(path, v, "a list of component names or a table of name = \"started\"|\"healthy\"") end
  local out = {}
  local items, named = entries(path, v)
  for _, e in ipairs(items) do
    local name = nonempty(sub(path, e[1]), e[2], "a component name")
    if out[name] then fail(path, "lists '" .. keyname(name) .. "' twice") end
    out[name] = "started"
  end
  for _, e in ipairs(named) do
    local cond = e[2]
    if cond == true then cond = "started" end
    if cond ~= "started" and cond ~= "healthy" then
      fail(sub(path, e[1]), "condition must be \"started\" or \"healthy\", got " .. show(cond))
    end
    if out[e[1]] then fail(path, "lists '" .. keyname(e[1]) .. "' twice") end
    out[e[1]] = cond
  end
  return out
end

function spec.heartbeat(_, path, v)
  if v == false then return false end
  local hb = { kind = "http" }
  for k, d in pairs(HEARTBEAT_DEFAULTS) do hb[k] = d end
  if v == true then return hb end
  if type(v) ~= "table" then must(path, v, "true, false or a table { port =, path =, interval =, ... }") end
  fields(path, v, { "port", "path", "tcp", "exec", "interval", "timeout", "misses", "grace", "check", "send", "expect" })
  for _, f in ipairs { "send", "expect" } do
    local x = rawget(v, f)
    if x ~= nil then
      if rawget(v, "tcp") == nil then fail(sub(path, f), "is for TCP heartbeats ({ tcp = port, send =, expect = })") end
      nonempty(sub(path, f), x)
      hb[f] = x
    end
  end
  local tcp, exec = rawget(v, "tcp"), rawget(v, "exec")
  if tcp ~= nil and exec ~= nil then fail(path, "give one of 'tcp' and 'exec', not both", "exec") end
  if tcp ~= nil or exec ~= nil then
    local kind = tcp ~= nil and "tcp" or "exec"
    for _, f in ipairs { "port", "path", "check" } do
      if rawget(v, f) ~= nil then
        fail(path, string.format("'%s' is for HTTP heartbeats; a %s heartbeat cannot have it", f, kind), f)
      end
    end
    hb.kind, hb.port, hb.path = kind, nil, nil
    if tcp ~= nil then hb.port = integer(sub(path, "tcp"), tcp, 1, 65535) end
    if exec ~= nil then hb.exec = words(sub(path, "exec"), exec) end
  else
    local port = rawget(v, "port")
    if port ~= nil then hb.port = integer(sub(path, "port"), port, 1, 65535) end
    local p = rawget(v, "path")
    if p ~= nil then
      nonempty(sub(path, "path"), p)
      if p:sub(1, 1) ~= "/" or p:find("[%s%c]") then
        fail(sub(path, "path"), "must be a URL path starting with '/', got " .. show(p))
      end
      hb.path = p
    end
    local check = rawget(v, "check")
    if check ~= nil then
      if type(check) ~= "function" then must(sub(path, "check"), check, "a function(body) returning ok, why") end
      hb.check = check
    end
  end
  for _, f in ipairs { "interval", "timeout" } do
    local x = rawget(v, f)
    if x ~= nil then hb[f] = dur(sub(path, f), x, true) end
  end
  local grace = rawget(v, "grace")
  if grace ~= nil then hb.grace = dur(sub(path, "grace"), grace) end
  local misses = rawget(v, "misses")
  if misses ~= nil then hb.misses = integer(sub(path, "misses"), misses, 1, 1000) end
  return hb
end

local SHORT_POLICIES = { always = "always", on_failure = "on_failure", ["on-failure"] = "on_failure",
                         ["unless-stopped"] = "always", never = "never", no = "never" }

function spec.restart(_, path, v)
  if v == policy.always or v == policy.on_failure or v == policy.never then
    fail(path, "a policy constructor must be called: policy.on_failure { ... }")
  end
  if policy.is(v) or type(v) == "function" then return v end
  if type(v) == "string" and SHORT_POLICIES[v] then return policy[SHORT_POLICIES[v]] {} end
  must(path, v, "a policy (policy.on_failure{...}, policy.always{...}, policy.never{}) or a function(failure)")
end

local PORT_HINT = ' (use e.g. "8080:80", "127.0.0.1:5432:5432", "53:53/udp")'

local function port_number(path, s, v)
  if type(s) == "number" then return integer(path, s, 1, 65535) end
  if s:find("%-") then fail(path, "port ranges are not supported in " .. show(v) .. "; list each port") end
  local n = s:find("^%d+$") and tonumber(s)
  if not n or n < 1 or n > 65535 then fail(path, "bad port " .. show(v) .. PORT_HINT) end
  return math.tointeger(n)
end

local function port(path, v)
  if type(v) == "number" then
    return { container = integer(path, v, 1, 65535), ip = "0.0.0.0", proto = "tcp" }
  end
  if type(v) == "table" then
    fields(path, v, { "host", "container", "ip", "proto" })
    local p = { ip = "0.0.0.0", proto = "tcp" }
    local c = rawget(v, "container")
    if c == nil then fail(path, "needs 'container' (the port inside the container)") end
    p.container = integer(sub(path, "container"), c, 1, 65535)
    local h = rawget(v, "host")
    if h ~= nil then p.host = integer(sub(path, "host"), h, 1, 65535) end
    local ip = rawget(v, "ip")
    if ip ~= nil then
      text(sub(path, "ip"), ip)
      if not is_ip(ip) then fail(sub(path, "ip"), "bad IP address " .. show(ip)) end
      p.ip = ip
    end
    local proto = rawget(v, "proto")
    if proto ~= nil and proto ~= "tcp" and proto ~= "udp" and proto ~= "sctp" then
      fail(sub(path, "proto"), "must be \"tcp\", \"udp\" or \"sctp\", got " .. show(proto))
    end
    p.proto = proto or "tcp"
    return p
  end
  if type(v) ~= "string" then must(path, v, "a string like \"8080:80\", a port number or a table") end
  text(path, v)
  local s, proto = v, "tcp"
  local body, pr = s:match("^(.*)/(%w+)$")
  if body then
    if pr ~= "tcp" and pr ~= "udp" and pr ~= "sctp" then fail(path, "bad protocol in " .. show(v) .. PORT_HINT) end
    s, proto = body, pr
  end
  local ip, host, cont
  if s:sub(1, 1) == "[" then
    local rest
    ip, rest = s:match("^%[([%x:%.]+)%]:(.*)$")
    if not ip then fail(path, "bad port " .. show(v) .. PORT_HINT) end
    host, cont = rest:match("^(%d*):([^:]+)$")
    if not host then fail(path, "bad port " .. show(v) .. PORT_HINT) end
  else
    local parts = {}
    for part in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
    if #parts == 1 then
      cont = parts[1]
    elseif #parts == 2 then
      host, cont = parts[1], parts[2]
      if host == "" then fail(path, "bad port " .. show(v) .. PORT_HINT) end
    elseif #parts == 3 then
      ip, host, cont = parts[1], parts[2], parts[3]
    else
      fail(path, "bad port " .. show(v) .. PORT_HINT)
    end
  end
  if ip and not is_ip(ip) then fail(path, "bad IP address in " .. show(v) .. PORT_HINT) end
  local p = { ip = ip or "0.0.0.0", proto = proto, container = port_number(path, cont, v) }
  if host and host ~= "" then p.host = port_number(path, host, v) end
  return p
end

function spec.ports(_, path, v)
  local out = {}
  for _, e in ipairs(list(path, v, "of ports")) do out[#out + 1] = port(sub(path, e[1]), e[2]) end
  return out
end

local VOLUME_HINT = ' (use e.g. "data:/var/lib/data", "./conf:/etc/app:ro" or { tmpfs = "/tmp", size = "64m" })'
local VOLUME_NAME = "^[%w][%w_.-]*$"

local function mount_target(path, t, v)
  text(path, t)
  if t:sub(1, 1) ~= "/" then
    fail(path, "the mount target must be an absolute path in the container, got " .. show(v or t))
  end
  return normpath(t)
end

local function volume_from(ctx, path, src, target, ro, v)
  target = mount_target(path, target, v)
  local c = src:sub(1, 1)
  if c == "~" then
    fail(path, "bind mount source " .. show(src) .. ": ~ is not expanded; use a path relative to the stack file")
  end
  if c == "/" or c == "." then
    local abs = join(ctx.dir, src)
    local k = file_kind(abs)
    if not k then
      fail(path, "bind mount source " .. show(src) .. " does not exist (relative to the stack file)")
    elseif k ~= "file" and k ~= "dir" and k ~= "socket" then
      fail(path, "bind mount source " .. show(src) .. " is " .. (KINDS[k] or KINDS.other) ..
        "; mw binds a file, a directory or a socket")
    end
    return { type = "bind", source = abs, target = target, read_only = ro }
  end
  if not src:find(VOLUME_NAME) then fail(path, "bad volume name " .. show(src) .. VOLUME_HINT) end
  return { type = "volume", name = src, target = target, read_only = ro }
end

local function volume(ctx, path, v)
  if type(v) == "string" then
    text(path, v)
    local parts = {}
    for part in (v .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
    if #parts == 1 then
      if v:sub(1, 1) == "/" then
        fail(path, "anonymous volume " .. show(v) .. " is lost on every recreation; name it: \"name:" ..
          cut(printable(v), 40) .. "\"")
      end
      fail(path, "bad volume " .. show(v) .. VOLUME_HINT)
    end
    if #parts > 3 or parts[1] == "" or parts[2] == "" then fail(path, "bad volume " .. show(v) .. VOLUME_HINT) end
    local mode = parts[3]
    if mode ~= nil and mode ~= "ro" and mode ~= "rw" then
      fail(path, "bad mode " .. show(mode) .. " in " .. show(v) .. " (use ro or rw)")
    end
    return volume_from(ctx, path, parts[1], parts[2], mode == "ro", v)
  end
  if type(v) ~= "table" then must(path, v, "a string like \"data:/path\" or a table") end
  if rawget(v, "tmpfs") ~= nil then
    fields(path, v, { "tmpfs", "size" })
    local m = { type = "tmpfs", target = mount_target(sub(path, "tmpfs"), rawget(v, "tmpfs")) }
    local size = rawget(v, "size")
    if size ~= nil then m.size = bytes(sub(path, "size"), size) end
    return m
  end
  fields(path, v, { "source", "target", "read_only", "tmpfs", "size", "shared" })
  local src, target = rawget(v, "source"), rawget(v, "target")
  local shared = rawget(v, "shared")
  if shared ~= nil then boolean(sub(path, "shared"), shared) end
  if src == nil then fail(path, "needs 'source' (a volume name or a path) or 'tmpfs'") end
  if target == nil then fail(path, "needs 'target' (the path in the container)") end
  nonempty(sub(path, "source"), src)
  local ro = rawget(v, "read_only")
  if ro ~= nil then boolean(sub(path, "read_only"), ro) end
  local m = volume_from(ctx, path, src, target, ro == true)
  if shared then
    if m.type ~= "volume" then fail(sub(path, "shared"), "only a named volume can be shared by instances") end
    m.shared = true
  end
  return m
end

function spec.volumes(ctx, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of volumes")) do
    local p = sub(path, e[1])
    local m = volume(ctx, p, e[2])
    if seen[m.target] then
      fail(p, string.format("mount target %s is also used by item [%d]", show(m.target), seen[m.target]))
    end
    seen[m.target] = e[1]
    out[#out + 1] = m
  end
  return out
end

function spec.secrets(ctx, path, v)
  local out = {}
  for _, e in ipairs(map(path, v, "a table of name = \"./file\"")) do
    local name, file = e[1], e[2]
    local p = sub(path, name)
    if not name:find(VOLUME_NAME) or #name > 64 then
      fail(path, "bad secret name '" .. keyname(name) .. "' (use letters, digits, '_', '.', '-')", name)
    end
    nonempty(p, file, "a path to a file, relative to the stack file")
    local abs = join(ctx.dir, file)
    -- The path is named, never the content: the file is not even opened here.
    local k, st = file_kind(abs)
    if not k then fail(p, "secret file " .. show(file) .. " not found (relative to the stack file)") end
    if k ~= "file" then fail(p, "secret file " .. show(file) .. " is " .. (KINDS[k] or KINDS.other) .. ", not a regular file") end
    if st.size > stack.MAX_SECRET then fail(p, "secret file " .. show(file) .. " is larger than 1 MiB") end
    out[#out + 1] = { name = name, source = abs, target = "/run/secrets/" .. name }
  end
  return out
end

function spec.scale(_, path, v) return integer(path, v, 0, 1000) end

-- Owned by mw.autoscale; here it only has to be a table (or false to turn it off).
-- autoscale = { min =, max =, every =, decide = function(s) return desired end }
function spec.autoscale(_, path, v)
  if v == false then return nil end
  if type(v) ~= "table" then must(path, v, "a table { min =, max =, every =, decide = function(s) ... end }") end
  fields(path, v, { "min", "max", "every", "decide" })
  local a = { min = 1, max = 8, every = 5 }
  if rawget(v, "min") ~= nil then a.min = integer(sub(path, "min"), rawget(v, "min"), 0, 1000) end
  if rawget(v, "max") ~= nil then a.max = integer(sub(path, "max"), rawget(v, "max"), 1, 1000) end
  if a.min > a.max then fail(path, string.format("min (%d) is above max (%d)", a.min, a.max), "min") end
  if rawget(v, "every") ~= nil then a.every = dur(sub(path, "every"), rawget(v, "every"), true) end
  local decide = rawget(v, "decide")
  if type(decide) ~= "function" and not (type(decide) == "table" and getmetatable(decide) and not secret.is(decide)) then
    must(sub(path, "decide"), decide, "a function(s) returning the desired number of instances")
  end
  a.decide = decide
  return a
end

-- rollout = { parallel = 1, timeout = "60s" }: how a changed component with several
-- instances is replaced: how many at once, and how long each new one may take to be healthy.
function spec.rollout(_, path, v)
  if type(v) ~= "table" then must(path, v, "a table { parallel =, timeout = }") end
  fields(path, v, { "parallel", "timeout" })
  local r = { parallel = 1 }
  if rawget(v, "parallel") ~= nil then r.parallel = integer(sub(path, "parallel"), rawget(v, "parallel"), 1, 100) end
  if rawget(v, "timeout") ~= nil then r.timeout = dur(sub(path, "timeout"), rawget(v, "timeout"), true) end
  return r
end

function spec.working_dir(_, path, v)
  nonempty(path, v)
  if v:sub(1, 1) ~= "/" then fail(path, "must be an absolute path in the container, got " .. show(v)) end
  return v
end

function spec.user(_, path, v)
  if type(v) == "number" then return tostring(integer(path, v, 0, 4294967294)) end
  nonempty(path, v, "a string like \"1000:1000\" or \"nobody\"")
  if not v:find("^[%w_][%w_.-]*$") and not v:find("^[%w_][%w_.-]*:[%w_][%w_.-]*$") then
    fail(path, "bad user " .. show(v) .. " (use e.g. \"1000\", \"1000:1000\", \"nobody\")")
  end
  return v
end

function spec.labels(_, path, v)
  local out = {}
  for _, e in ipairs(map(path, v)) do
    local k = e[1]
    if not k:find("^[%w][%w_./-]*$") then fail(path, "bad label name '" .. keyname(k) .. "'", k) end
    if k == owner.KEY or k:sub(1, 3) == "mw." then
      fail(path, "label '" .. keyname(k) .. "' is reserved for mw", k)
    end
    out[k] = scalar(sub(path, k), e[2])
  end
  return out
end

function spec.hostname(_, path, v)
  nonempty(path, v)
  if not hostname_ok(v) then fail(path, "bad hostname " .. show(v)) end
  return v
end

function spec.extra_hosts(_, path, v)
  if type(v) ~= "table" then must(path, v, "a table of host = \"ip\"") end
  local out = {}
  local items, named = entries(path, v)
  for _, e in ipairs(items) do
    local p = sub(path, e[1])
    local s = text(p, e[2], "a string \"host:ip\"")
    local h, ip = s:match("^([^:]+):(.+)$")
    if not h then fail(p, "must look like \"host:ip\", got " .. show(s)) end
    named[#named + 1] = { h, ip, p }
  end
  for _, e in ipairs(named) do
    local p = e[3] or sub(path, e[1])
    if not hostname_ok(e[1]) then fail(p, "bad host name '" .. keyname(e[1]) .. "'") end
    local ip = text(p, e[2], "a string (an IP address or \"host-gateway\")")
    if ip ~= "host-gateway" and not is_ip(ip) then fail(p, "bad IP address " .. show(ip)) end
    out[#out + 1] = e[1] .. ":" .. ip
  end
  return out
end

function spec.stop_signal(_, path, v)
  if type(v) == "number" then return tostring(integer(path, v, 1, 64)) end
  nonempty(path, v, "a signal name like \"SIGTERM\"")
  local s = v:upper():gsub("^SIG", "")
  if SIGNALS[s] or s:find("^RTMIN%+%d+$") or s:find("^RTMAX%-%d+$") then return "SIG" .. s end
  fail(path, "unknown signal " .. show(v) .. " (use e.g. \"SIGTERM\", \"SIGINT\", \"SIGQUIT\")")
end

function spec.stop_grace(_, path, v) return dur(path, v) end
function spec.init(_, path, v) return boolean(path, v) end
function spec.read_only(_, path, v) return boolean(path, v) end

local function caps(_, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of capability names")) do
    local p = sub(path, e[1])
    local c = nonempty(p, e[2], "a capability name like \"NET_ADMIN\""):upper():gsub("^CAP_", "")
    if not CAPABILITIES[c] then
      local names = {}
      for k in pairs(CAPABILITIES) do names[#names + 1] = k end
      local hint = sandbox.suggest(c, names)
      fail(p, "unknown capability " .. show(e[2]) .. (hint and " (did you mean '" .. hint .. "'?)" or ""))
    end
    if not seen[c] then out[#out + 1] = c; seen[c] = true end
  end
  return out
end
spec.cap_add, spec.cap_drop = caps, caps

function spec.memory(_, path, v)
  local b = bytes(path, v)
  -- The engine refuses limits below 6 MiB; saying so here beats a failed create later.
  if b < 6 * 1024 * 1024 then fail(path, "must be at least 6m (the engine's minimum), got " .. show(v)) end
  return b
end

function spec.shm_size(_, path, v)
  local b = bytes(path, v)
  if b <= 0 then fail(path, "must be > 0") end
  return b
end

function spec.cpus(_, path, v)
  local n = v
  if type(v) == "string" then n = v:find("^%d*%.?%d+$") and tonumber(v) or nil end
  if type(n) ~= "number" then must(path, v, "a number of CPUs like 0.5 or 2") end
  if n ~= n or n <= 0 or n > 1024 then fail(path, "must be a number of CPUs > 0, got " .. show(v)) end
  return n
end

function spec.ulimits(_, path, v)
  local out = {}
  for _, e in ipairs(map(path, v)) do
    local name, val = e[1], e[2]
    local p = sub(path, name)
    if not ULIMITS[name] then
      local names = {}
      for k in pairs(ULIMITS) do names[#names + 1] = k end
      local hint = sandbox.suggest(name, names)
      fail(path, "unknown ulimit '" .. keyname(name) .. "'" ..
        (hint and " (did you mean '" .. hint .. "'?)" or ""), name)
    end
    local soft, hard
    if type(val) == "table" then
      fields(p, val, { "soft", "hard" })
      soft = integer(sub(p, "soft"), rawget(val, "soft"), -1, math.maxinteger)
      hard = integer(sub(p, "hard"), rawget(val, "hard"), -1, math.maxinteger)
      if hard ~= -1 and (soft == -1 or soft > hard) then fail(p, "soft limit must not exceed the hard limit") end
    else
      if type(val) ~= "number" then must(p, val, "a number or a table { soft =, hard = }") end
      soft = integer(p, val, -1, math.maxinteger)
      hard = soft
    end
    out[name] = { soft = soft, hard = hard }
  end
  return out
end

function spec.networks(_, path, v)
  local out, seen = {}, {}
  for _, e in ipairs(list(path, v, "of network names")) do
    local p = sub(path, e[1])
    local n = nonempty(p, e[2], "a network name")
    if not n:find(VOLUME_NAME) or #n > 64 then fail(p, "bad network name " .. show(n)) end
    if seen[n] then fail(p, "network " .. show(n) .. " is listed twice") end
    seen[n] = true
    out[#out + 1] = n
  end
  return out
end

-- Components and the stack ----------------------------------------------------------------

local COMPONENT_NAME = "^[a-z0-9][a-z0-9_-]*$"
local STACK_NAME = "^[a-z0-9][a-z0-9_.-]*$"

local function component(ctx, name, raw)
  local path = { "components", name }
  if type(raw) ~= "table" then
    must(path, raw, "a table of fields (e.g. { image = \"nginx\" })")
  end
  fields(path, raw, COMPONENT_FIELDS)
  -- Before the fields themselves: with both given, a missing Dockerfile is beside the point.
  local has_image, has_build = rawget(raw, "image") ~= nil, rawget(raw, "build") ~= nil
  if has_image and has_build then fail(path, "has both 'image' and 'build'; give one", "build") end
  if not has_image and not has_build then fail(path, "needs 'image' or 'build'") end
  local c = fields_table.defaults(name)
  for _, f in ipairs(COMPONENT_FIELDS) do
    local v = rawget(raw, f)
    if v ~= nil then c[f] = spec[f](ctx, sub(path, f), v) end
  end
  -- The seed's components find their introspection port here.
  if c.heartbeat and c.heartbeat.kind == "http" and c.env.INTROSPECTION_PORT == nil then
    c.env.INTROSPECTION_PORT = tostring(c.heartbeat.port)
  end
  return c
end

-- The first cycle met walking the components by name, printed from where it closes.
local function find_cycle(comps, names)
  local state, trail = {}, {}
  local function visit(n)
    state[n] = "active"
    trail[#trail + 1] = n
    local deps = {}
    for d in pairs(comps[n].depends_on) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      if state[d] == "active" then
        local cycle = {}
        for i = #trail, 1, -1 do
          table.insert(cycle, 1, trail[i])
          if trail[i] == d then break end
        end
        cycle[#cycle + 1] = d
        return cycle
      elseif state[d] == nil then
        local c = visit(d)
        if c then return c end
      end
    end
    trail[#trail] = nil
    state[n] = "done"
  end
  for _, n in ipairs(names) do
    if state[n] == nil then
      local c = visit(n)
      if c then return c end
    end
  end
end

-- Kahn's algorithm with the ready set in a binary heap, so ties go by name and a thousand
-- components stay cheap.
local function start_order(comps, names)
  local indeg, users = {}, {}
  for _, n in ipairs(names) do indeg[n] = 0; users[n] = {} end
  for _, n in ipairs(names) do
    for d in pairs(comps[n].depends_on) do
      indeg[n] = indeg[n] + 1
      users[d][#users[d] + 1] = n
    end
  end
  local heap = {}
  local function push(x)
    heap[#heap + 1] = x
    local i = #heap
    while i > 1 and heap[i // 2] > heap[i] do
      heap[i], heap[i // 2] = heap[i // 2], heap[i]
      i = i // 2
    end
  end
  local function pop()
    local top = heap[1]
    heap[1] = heap[#heap]
    heap[#heap] = nil
    local i = 1
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if heap[l] and heap[l] < heap[m] then m = l end
      if heap[r] and heap[r] < heap[m] then m = r end
      if m == i then break end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
    return top
  end
  for _, n in ipairs(names) do if indeg[n] == 0 then push(n) end end
  local order = {}
  while #heap > 0 do
    local n = pop()
    order[#order + 1] = n
    for _, u in ipairs(users[n]) do
      indeg[u] = indeg[u] - 1
      if indeg[u] == 0 then push(u) end
    end
  end
  return order
end

local function check_links(comps, names)
  for _, n in ipairs(names) do
    local c = comps[n]
    local deps = {}
    for d in pairs(c.depends_on) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      local p = { "components", n, "depends_on" }
      if not comps[d] then
        local hint = sandbox.suggest(d, names)
        fail(p, string.format("unknown component '%s'%s", keyname(d),
          hint and string.format(" (did you mean '%s'?)", hint) or ""))
      end
      if c.depends_on[d] == "healthy" and not comps[d].heartbeat then
        fail(p, string.format("'%s' has no heartbeat, so it can never be healthy " ..
          "(give it a heartbeat or depend on it being \"started\")", d))
      end
    end
  end
  local cycle = find_cycle(comps, names)
  if cycle then
    fail({ "components", cycle[1], "depends_on" }, "dependency cycle: " .. table.concat(cycle, " -> "))
  end

  -- Two containers cannot hold one host port; neither can two instances of one component.
  local taken = {}
  for _, n in ipairs(names) do
    local c = comps[n]
    for i, p in ipairs(c.ports) do
      if p.host then
        local path = { "components", n, "ports", i }
        if c.scale > 1 then
          fail(path, string.format("host port %d is fixed, so %d instances (scale) cannot all publish it",
            p.host, c.scale))
        end
        local key = p.proto .. "/" .. p.host
        for _, other in ipairs(taken[key] or {}) do
          local wild = other.ip == "0.0.0.0" or other.ip == "::" or p.ip == "0.0.0.0" or p.ip == "::"
          if wild or other.ip == p.ip then
            fail(path, string.format("host port %d/%s is already published by %s", p.host, p.proto,
              other.name == n and "this component" or ("component '" .. other.name .. "'")))
          end
        end
        taken[key] = taken[key] or {}
        table.insert(taken[key], { ip = p.ip, name = n })
      end
    end
  end
end

local function validate(ctx, top)
  validated = 0
  if type(top) ~= "table" then
    fail({}, "the stack file must return a table { components = { ... } }, got " .. typeof(top))
  end
  fields({}, top, TOP_FIELDS)
  local name = rawget(top, "name")
  if name ~= nil then
    nonempty({ "name" }, name)
    if not name:find(STACK_NAME) or #name > 63 then
      fail({ "name" }, "bad stack name " .. show(name) ..
        " (use lowercase letters, digits, '_', '.', '-'; start with a letter or digit)")
    end
  else
    local base = ctx.dir:match("([^/]+)$")
    name = base and base:lower()
    if not name or not name:find(STACK_NAME) or #name > 63 then
      fail({}, string.format(
        "the stack is named after its directory, but %s is not a valid stack name; set name = \"...\"",
        show(base or ctx.dir)))
    end
  end

  local raw = rawget(top, "components")
  if raw == nil then fail({}, "missing field 'components' (a table of name = { image = ..., ... })") end
  if type(raw) ~= "table" then must({ "components" }, raw, "a table of name = component") end
  local count = 0
  for _ in next, raw do
    count = count + 1
    if count > MAX_COMPONENTS then fail({ "components" }, string.format("more than %d components", MAX_COMPONENTS)) end
  end
  local names = {}
  for k in next, raw do
    if type(k) ~= "string" then
      if type(k) == "number" then
        fail({ "components" },
          string.format("must be a table of name = component, but has a list item [%s]", tostring(k)))
      end
      fail({ "components" }, "has a key of type " .. type(k))
    end
    names[#names + 1] = k
  end
  if #names == 0 then fail({ "components" }, "no components defined") end
  table.sort(names)
  ctx.names = names
  for _, n in ipairs(names) do
    if not n:find(COMPONENT_NAME) or #n > 63 then
      fail({ "components", n }, "bad component name (use lowercase letters, digits, '_' and '-', " ..
        "starting with a letter or digit; it becomes a container name and a DNS alias)")
    end
  end

  local comps = {}
  for _, n in ipairs(names) do comps[n] = component(ctx, n, rawget(raw, n)) end
  check_links(comps, names)
  -- A copy: the stack file can reach the sandbox's own list through the __required global.
  local required = {}
  for _, f in ipairs(ctx.required) do
    if type(f) == "string" then required[#required + 1] = f end
  end
  return {
    name = name, file = ctx.file, dir = ctx.dir, components = comps,
    order = start_order(comps, names), required = required,
  }
end

-- Loading ---------------------------------------------------------------------------------------

local function one_line(msg)
  msg = msg:gsub("\nstack traceback:.*$", "")
  msg = printable((msg:gsub("%s*[\r\n]+%s*", " ")))
  return cut(msg, MAX_MESSAGE)
end

local function error_text(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return tostring(e) end
  -- Never tostring a table here: its __tostring is user code running outside any budget.
  return "(error object is a " .. type(e) .. " value)"
end

local function is_budget(e)
  return type(e) == "string" and (e:find("^budget exceeded") or e:find("^[^\n]-:%d+: budget exceeded")) and true
end

local function absolute(path, cwd)
  if path:sub(1, 1) == "/" then return normpath(path) end
  if cwd and cwd:sub(1, 1) == "/" then return join(cwd, path) end
  return normpath(path)
end

-- The working directory for relative stack paths: opts.cwd, else $PWD when the file is found
-- there (a parent that chdir'ed without updating PWD would otherwise mislead us).
local function working_dir(path, opts)
  if opts.cwd then return opts.cwd end
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" and (opts.source or file_kind(join(pwd, path)) == "file") then return pwd end
  if io.popen then
    local p = io.popen("pwd -P 2>/dev/null")
    if p then
      local d = p:read("l")
      p:close()
      if d and d:sub(1, 1) == "/" then return d end
    end
  end
  return nil
end

-- stack.load(path[, opts]) -> stack | nil, message, required_files
-- opts.cwd: directory relative paths start from; opts.source: the text, instead of reading
-- path; opts.budget: { instructions =, seconds = } for running the file.
function stack.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then error("stack.load: expected a file path", 2) end
  local file = absolute(path, working_dir(path, opts))
  local ctx = { file = file, dir = dirname(file), required = {} }

  local src = opts.source
  if not src then
    local k = file_kind(path)
    if k and k ~= "file" then return nil, one_line(path .. ": is " .. (KINDS[k] or KINDS.other) .. ", not a stack file"), {} end
    local read, err, code = fs.read(path, sandbox.MAX_CHUNK)
    if code == "EFBIG" then
      return nil, one_line(string.format("%s: the stack file is too large (more than %d bytes)", path, sandbox.MAX_CHUNK)), {}
    end
    if not read then return nil, one_line((err:gsub("^cannot read ([^\n]*): ([^:]*)$", "%1: %2"))), {} end
    src = read
  end
  if #src > sandbox.MAX_CHUNK then
    return nil, one_line(string.format("%s: the stack file is too large (more than %d bytes)", path, sandbox.MAX_CHUNK)), {}
  end
  ctx.source = src

  local env = sandbox.env(ctx.dir, dirname(path))
  src = sandbox.source_text(src)
  ctx.required = rawget(env, "__required")
  if src:byte(1) == 27 then return nil, one_line(path .. ": binary chunks are not allowed"), {} end
  -- Every message starts with the stack file's name, even when Lua's own position names
  -- another chunk (a helper file, a string given to load) or none at all.
  local function located(msg)
    if msg:sub(1, #path + 1) ~= path .. ":" then return path .. ": " .. msg end
    return msg
  end
  local chunk, err = load(src, "@" .. path, "t", env)
  if not chunk then return nil, one_line(located(error_text(err))), ctx.required end

  ctx.text = blank_comments(src)
  local k, first, second, table_name, outer_name = repeated_key(ctx.text)
  if k then
    local lines = string.format("(lines %d and %d)", line_at(ctx.text, first), line_at(ctx.text, second))
    local what
    if table_name == "components" then
      what = string.format("component '%s' is defined twice %s", keyname(k), lines)
    elseif outer_name == "components" and table_name then
      what = string.format("component '%s': field '%s' is given twice %s", keyname(table_name), keyname(k), lines)
    else
      what = string.format("key '%s' is given twice in one table %s; Lua would keep only the last", keyname(k), lines)
    end
    return nil, one_line(string.format("%s:%d: %s", path, line_at(ctx.text, second), what)), ctx.required
  end

  -- The chunk runs in a coroutine of its own inside the budget, so a stack file that yields
  -- gets a clear message whatever the budget does with a yield.
  local function run()
    local co = coroutine.create(chunk)
    local res = table.pack(coroutine.resume(co))
    -- Turned to text here: a budget may pass only strings through.
    if not res[1] then error(error_text(res[2]), 0) end
    if coroutine.status(co) ~= "dead" then
      error("the stack file yielded (coroutine.yield outside a coroutine of its own)", 0)
    end
    return table.unpack(res, 2, res.n)
  end
  local core = require "mw.core"
  local r = table.pack(core.budget(run, opts.budget or BUDGET))
  if not r[1] then
    local e = r[2]
    if is_budget(e) then
      return nil, one_line(path .. ": stack file ran too long (budget exceeded)"), ctx.required
    end
    return nil, one_line(located(error_text(e))), ctx.required
  end
  if r.n < 2 then
    return nil, one_line(path .. ": the stack file must return a table { components = { ... } }, " ..
      "but returned nothing"), ctx.required
  end

  local ok, res = pcall(validate, ctx, r[2])
  if ok then return res end
  if getmetatable(res) ~= Failure then
    -- A bug in this file, not in the stack: still one line, but say whose it is.
    return nil, one_line(path .. ": internal error while validating: " .. error_text(res)), ctx.required
  end
  local line = (#res.path > 0 or res.extra ~= nil) and locate(ctx, res.path, res.extra) or nil
  local w = where(res.path)
  local msg = string.format("%s%s: %s%s", path, line and (":" .. line) or "", w ~= "" and (w .. ": ") or "", res.msg)
  return nil, one_line(msg), ctx.required
end

-- The plan `mw check` prints ---------------------------------------------------------------

local function heartbeat_summary(hb)
  if not hb then return "no heartbeat" end
  local what
  if hb.kind == "http" then
    what = string.format("http :%d%s", hb.port, hb.path)
  elseif hb.kind == "tcp" then
    what = string.format("tcp :%d", hb.port)
  else
    what = "exec " .. table.concat(hb.exec, " ")
  end
  return string.format("heartbeat %s every %s (timeout %s, %d misses, grace %s)%s", what,
    duration.format(hb.interval), duration.format(hb.timeout), hb.misses, duration.format(hb.grace),
    hb.check and ", with check" or "")
end

function stack.plan(s)
  local lines = { string.format("stack %s (%s): %d component%s in start order", s.name, s.file,
    #s.order, #s.order == 1 and "" or "s") }
  for i, name in ipairs(s.order) do
    local c = s.components[name]
    local parts = {}
    parts[#parts + 1] = c.image and ("image " .. c.image) or ("build " .. relative(s.dir, c.build.context))
    local deps = {}
    for d, cond in pairs(c.depends_on) do deps[#deps + 1] = string.format("%s (%s)", d, cond) end
    table.sort(deps)
    parts[#parts + 1] = #deps > 0 and ("after " .. table.concat(deps, ", ")) or "no dependencies"
    parts[#parts + 1] = heartbeat_summary(c.heartbeat)
    if c.scale ~= 1 then parts[#parts + 1] = "scale " .. c.scale end
    if #c.ports > 0 then
      local ps = {}
      for _, p in ipairs(c.ports) do
        ps[#ps + 1] = string.format("%s:%s->%d/%s", p.ip, p.host or "*", p.container, p.proto)
      end
      parts[#parts + 1] = "ports " .. table.concat(ps, ", ")
    end
    if #c.volumes > 0 then
      local vs = {}
      for _, v in ipairs(c.volumes) do
        local src = v.type == "volume" and v.name or v.type == "bind" and relative(s.dir, v.source) or "tmpfs"
        vs[#vs + 1] = src .. ":" .. v.target .. (v.read_only and ":ro" or "")
      end
      parts[#parts + 1] = "volumes " .. table.concat(vs, ", ")
    end
    if #c.secrets > 0 then
      -- Names only: not even the file's path, let alone its content.
      local names = {}
      for _, sec in ipairs(c.secrets) do names[#names + 1] = sec.name end
      parts[#parts + 1] = "secrets " .. table.concat(names, ", ")
    end
    parts[#parts + 1] = "restart " .. policy.describe(c.restart)
    lines[#lines + 1] = string.format("%2d. %s: %s", i, name, table.concat(parts, "; "))
  end
  return table.concat(lines, "\n")
end

-- For callers that print values the way validation messages do (mw import, mw inspect).
stack.printable = printable

return stack
