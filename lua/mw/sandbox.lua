-- The environment a stack file runs in: safe libraries, the mw.* stdlib, Lua files beside it.
local fs = require "mw.fs"

local sandbox = {}

-- The stdlib modules a stack file may require. Orchestrator modules share the mw. prefix in
-- the binary, so the list is explicit rather than "whatever require can find".
local STDLIB = {
  "mw.duration", "mw.backoff", "mw.policy", "mw.secret", "mw.autoscale", "mw.webhook",
}
local ALLOWED = {}
for _, name in ipairs(STDLIB) do ALLOWED[name] = true end

-- Globals a stack file might reach for, with the reason it cannot have them.
local DENIED = {
  io = "is not available in stack files (loading a stack must have no side effects)",
  debug = "is not available in stack files",
  package = "is not available in stack files",
  dofile = "is not available in stack files (use require \"name\" for a file beside the stack file)",
  loadfile = "is not available in stack files (use require \"name\" for a file beside the stack file)",
  collectgarbage = "is not available in stack files",
}
local OS_ALLOWED = { time = true, clock = true, date = true, getenv = true }

-- Edit distance, for "did you mean" hints here and in the stack validator.
local function distance(a, b)
  if #a > 64 or #b > 64 then return math.huge end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, #b do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The closest candidate to name, if it is close enough to be a likely typo.
function sandbox.suggest(name, candidates)
  if type(name) ~= "string" then return nil end
  local best, best_d
  local lname = name:lower()
  for _, c in ipairs(candidates) do
    local d = lname == c:lower() and 0 or distance(name, c)
    if d < (best_d or math.huge) or (d == best_d and c < best) then best, best_d = c, d end
  end
  if best and best_d <= math.max(2, #name // 3) and best_d < #name then return best end
  return nil
end

-- A short, printable rendering of a key for a message (keys may hold any bytes).
local function keyname(k)
  if type(k) ~= "string" then return "(" .. type(k) .. ")" end
  local s = k:sub(1, 40):gsub("[%c\128-\255\\']", function(c) return string.format("\\x%02x", c:byte()) end)
  return s .. (#k > 40 and "..." or "")
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function first_line(msg)
  msg = type(msg) == "string" and msg or "(error object is a " .. type(msg) .. " value)"
  return (msg:match("^[^\n]*"))
end

-- A per-environment read-only view of a stdlib module: the module itself is shared by every
-- load of every stack, so a stack file must not be able to change it for the next one. The
-- view is deep: a plain table inside (policy.actions) is handed out as a view of its own.
-- Objects with a metatable (policies, backoffs, secrets) guard themselves and pass as they are.
local function readonly(mod, name, views)
  if type(mod) ~= "table" then return mod end
  views = views or setmetatable({}, { __mode = "k" })
  if views[mod] then return views[mod] end
  local function view(v, k)
    if type(v) == "table" and getmetatable(v) == nil then
      return readonly(v, name .. "." .. keyname(k), views)
    end
    return v
  end
  local v = setmetatable({}, {
    __index = function(_, k) return view(mod[k], k) end,
    __newindex = function(_, k)
      error(string.format("module '%s' is read-only (cannot set '%s')", name, keyname(k)), 2)
    end,
    __pairs = function()
      return function(_, k)
        local nk, nv = next(mod, k)
        return nk, view(nv, nk)
      end, mod, nil
    end,
    __len = function() return #mod end,
    -- a callable module (secret "x") stays callable through its view
    __call = function(_, ...) return mod(...) end,
    __metatable = false,
  })
  views[mod] = v
  return v
end

-- A helper file is source text: 1 MiB is many times the largest stack library one would write,
-- and reading stops there (a FIFO or a device is refused by fs.read before any byte is read).
sandbox.MAX_HELPER = 1024 * 1024

local function read_file(path)
  local s, err, code = fs.read(path, sandbox.MAX_HELPER)
  if s then return s end
  if code == "EFBIG" then return nil, path .. " is larger than 1 MiB", code end
  if code == "EINVAL" then return nil, path .. " is " .. (err:match("not a regular file.*$") or "not a regular file"), code end
  return nil, err, code
end

-- Source text as a file loader would see it: load() of a string, unlike luaL_loadfile, keeps a
-- UTF-8 byte order mark and a "#!" first line, and both are syntax errors.
function sandbox.source_text(src)
  if src:sub(1, 3) == "\239\187\191" then src = src:sub(4) end
  if src:sub(1, 1) == "#" then src = src:gsub("^[^\n]*", "", 1) end
  return src
end

-- Library functions whose one C call could outlast the budget, since the count hook never
-- fires inside it, are replaced by versions that do big jobs in slices with Lua between them.
-- (string.find/match/gmatch/gsub are bounded in core/pattern.c, string.rep and every other
-- allocation by the memory ceiling of core.budget.)
local SLICE = 10000             -- elements one C call may touch
local SORT_IN_C = 100000        -- longer arrays are sorted in Lua, where the hook fires
sandbox.MAX_CHUNK = 1024 * 1024 -- bytes of source that load() compiles in one go (and a file)

local function int_arg(v)
  return math.tointeger(type(v) == "string" and tonumber(v) or v)
end

local move = table.move
local function bounded_move(a1, f, e, t, a2)
  local fi, ei, ti = int_arg(f), int_arg(e), int_arg(t)
  -- small, empty, malformed or overflowing ranges: the library's own checks and messages
  if not (fi and ei and ti) or ei < fi or (fi <= 0 and ei >= math.maxinteger + fi)
      or ei - fi < SLICE or ti > math.maxinteger - (ei - fi) then
    return move(a1, f, e, t, a2)
  end
  local dest = a2 == nil and a1 or a2
  if ti > fi then       -- slices from the top, so an overlapping move reads before it writes
    local hi = ei
    while hi >= fi do
      local lo = math.max(fi, hi - SLICE + 1)
      move(a1, lo, hi, ti + (lo - fi), dest)
      hi = lo - 1
    end
  else
    local lo = fi
    while lo <= ei do
      local hi = math.min(ei, lo + SLICE - 1)
      move(a1, lo, hi, ti + (lo - fi), dest)
      lo = hi + 1
    end
  end
  return dest
end

local concat = table.concat
local function bounded_concat(t, sep, i, j)
  if type(t) ~= "table" then return concat(t, sep, i, j) end
  local ii = i == nil and 1 or int_arg(i)
  local jj = j == nil and #t or int_arg(j)
  if not (ii and jj) or jj - ii < SLICE or (ii <= 0 and jj >= math.maxinteger + ii) then
    return concat(t, sep, ii or i, jj or j)
  end
  local parts = {}
  local lo = ii
  while lo <= jj do
    local hi = math.min(jj, lo + SLICE - 1)
    parts[#parts + 1] = concat(t, sep, lo, hi)
    lo = hi + 1
  end
  return concat(parts, sep)
end

-- Merge sort in Lua for long arrays (stable, which table.sort need not be).
local function lua_sort(t, n, lt)
  local a, b = {}, {}
  for i = 1, n do a[i] = t[i] end
  local width = 1
  while width < n do
    for lo = 1, n, 2 * width do
      local mid, hi = math.min(lo + width, n + 1), math.min(lo + 2 * width, n + 1)
      local x, y, k = lo, mid, lo
      while x < mid and y < hi do
        if lt(a[y], a[x]) then b[k] = a[y]; y = y + 1 else b[k] = a[x]; x = x + 1 end
        k = k + 1
      end
      while x < mid do b[k] = a[x]; x = x + 1; k = k + 1 end
      while y < hi do b[k] = a[y]; y = y + 1; k = k + 1 end
    end
    a, b = b, a
    width = width * 2
  end
  for i = 1, n do t[i] = a[i] end
end

local sort = table.sort
local function bounded_sort(t, lt)
  if type(t) ~= "table" then return sort(t, lt) end
  local n = #t
  if math.type(n) ~= "integer" or n <= SORT_IN_C then return sort(t, lt) end
  if lt ~= nil and type(lt) ~= "function" then return sort(t, lt) end
  lua_sort(t, n, lt or function(x, y) return x < y end)
end

local insert, remove = table.insert, table.remove
local function bounded_insert(t, ...)
  local nargs = select("#", ...)
  if type(t) ~= "table" or nargs ~= 2 then return insert(t, ...) end
  local pos, v = ...
  local n = #t
  local p = int_arg(pos)
  if math.type(n) ~= "integer" or not p or n - p < SLICE or p < 1 or p > n + 1 then return insert(t, pos, v) end
  for i = n, p, -1 do t[i + 1] = t[i] end
  t[p] = v
end

local function bounded_remove(t, ...)
  if type(t) ~= "table" or select("#", ...) == 0 then return remove(t, ...) end
  local pos = ...
  local n = #t
  local p = int_arg(pos)
  if math.type(n) ~= "integer" or not p or n - p < SLICE or p < 1 or p > n then return remove(t, pos) end
  local v = t[p]
  for i = p, n - 1 do t[i] = t[i + 1] end
  t[n] = nil
  return v
end

local function bounded_table()
  local t = copy(table)
  t.move, t.concat, t.sort = bounded_move, bounded_concat, bounded_sort
  t.insert, t.remove = bounded_insert, bounded_remove
  return t
end

-- A chunk for load(): a string up to MAX_CHUNK bytes, or a reader function whose pieces are
-- counted against the same limit (the compiler runs between two calls of it, in C).
local function bounded_chunk(chunk)
  if type(chunk) == "string" then
    if #chunk > sandbox.MAX_CHUNK then
      return nil, string.format("chunk too large for load (%d bytes; at most %d)", #chunk, sandbox.MAX_CHUNK)
    end
    return chunk
  end
  if type(chunk) ~= "function" then return chunk end
  local total = 0
  return function()
    local piece = chunk()
    if type(piece) == "string" then
      total = total + #piece
      if total > sandbox.MAX_CHUNK then
        error(string.format("chunk too large for load (more than %d bytes)", sandbox.MAX_CHUNK), 0)
      end
    end
    return piece
  end
end

-- A fresh environment for a stack file in dir (an absolute path). Nothing is shared between
-- two environments except the read-only stdlib modules, so the result depends only on dir.
-- shown_dir, if given, is how messages name that directory (the path the user typed).
function sandbox.env(dir, shown_dir)
  if type(dir) ~= "string" or dir == "" then error("sandbox.env: expected a directory path", 2) end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  shown_dir = type(shown_dir) == "string" and shown_dir:gsub("/+$", "") or dir

  local env = {}
  local loaded, loading, required = {}, {}, {}

  for _, k in ipairs { "pairs", "ipairs", "select", "type", "tostring", "tonumber", "error",
                       "assert", "pcall", "xpcall", "next", "rawget", "rawset", "rawequal",
                       "rawlen" } do
    env[k] = _G[k]
  end
  env._VERSION = _VERSION
  env.string = copy(string)
  env.table = bounded_table()
  env.utf8 = copy(utf8)
  env.coroutine = copy(coroutine)
  env.math = copy(math)
  -- Reseeding would change the host's math.random for everything else in the process.
  env.math.randomseed = nil

  local os_t = {}
  for k in pairs(OS_ALLOWED) do os_t[k] = os[k] end
  env.os = setmetatable(os_t, {
    __index = function(_, k)
      error(string.format("os.%s is not available in stack files", keyname(k)), 2)
    end,
    __metatable = false,
  })

  -- stdout may carry machine output (mw status --json); the user's prints go to stderr.
  env.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    io.stderr:write(table.concat(parts, "\t"), "\n")
  end

  -- A finalizer would run later, outside the load's budget, in the middle of mw's own work.
  env.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error("setmetatable: __gc metamethods are not allowed in stack files", 2)
    end
    return setmetatable(t, mt)
  end
  -- Only tables: the string metatable is the host's string library itself.
  env.getmetatable = function(v)
    if type(v) ~= "table" then return nil end
    return getmetatable(v)
  end

  -- Text chunks only, always in this environment: bytecode can break the VM's invariants.
  env.load = function(chunk, chunkname, mode, e)
    if mode ~= nil and mode ~= "t" then
      error("load: only text chunks are allowed in stack files (mode \"t\")", 2)
    end
    if e ~= nil and e ~= env then
      error("load: stack files may only load chunks into their own environment", 2)
    end
    if type(chunk) == "string" and chunk:byte(1) == 27 then
      return nil, "binary chunks are not allowed in stack files"
    end
    local c, err = bounded_chunk(chunk)
    if c == nil then return nil, err end
    return load(c, chunkname, "t", env)
  end

  env.require = function(name)
    if type(name) ~= "string" then
      error("require: expected a module name, got " .. type(name), 2)
    end
    local v = loaded[name]
    if v ~= nil then return v end
    if loading[name] then error(string.format("require: '%s' requires itself (a require cycle)", keyname(name)), 2) end

    if name:sub(1, 3) == "mw." then
      if not ALLOWED[name] then
        error(string.format("module '%s' is not available to stack files (they may require %s)",
          keyname(name), table.concat(STDLIB, ", ")), 2)
      end
      local ok, mod = pcall(require, name)
      if not ok then
        error(string.format("module '%s' is not available: %s", name, first_line(mod)), 2)
      end
      v = readonly(mod, name)
      loaded[name] = v
      return v
    end

    -- A file beside the stack file: "helpers" -> dir/helpers.lua, "lib.x" -> dir/lib/x.lua.
    if name:find("..", 1, true) or name:find("/", 1, true) or not name:find("^[%w_][%w_.]*$")
        or name:sub(-1) == "." then
      error(string.format("require: bad module name '%s' (use the plain name of a Lua file " ..
        "beside the stack file, without '/' or '..')", keyname(name)), 2)
    end
    local path = (dir == "/" and "" or dir) .. "/" .. name:gsub("%.", "/") .. ".lua"
    -- Recorded before loading so the reloader also watches a helper that fails to load.
    required[#required + 1] = path
    local src, err, code = read_file(path)
    if not src then
      err = first_line(err)
      if code == "EINVAL" or code == "EFBIG" then error(string.format("module '%s': %s", name, err), 2) end
      error(string.format("module '%s' not found (%s)", name,
        err:find("No such file", 1, true) and "no file " .. path or err), 2)
    end
    local rel = name:gsub("%.", "/") .. ".lua"
    local shown = (shown_dir == "." and rel) or (shown_dir == "" and "/" .. rel) or (shown_dir .. "/" .. rel)
    local fn, lerr = load(sandbox.source_text(src), "@" .. shown, "t", env)
    if not fn then error(first_line(lerr), 0) end
    loading[name] = true
    local ok, r = pcall(fn, name, path)
    loading[name] = nil
    if not ok then error(r, 0) end
    if r == nil then r = true end
    loaded[name] = r
    return r
  end

  -- mw.env("NAME"[, default]) and mw.interpolate("${NAME:-x}"): values from mw's environment,
  -- else from the .env beside the stack file, as compose reads its variables (the shell wins
  -- over .env). The file is read at the first call, and watched for changes from then on.
  local dotenv_vars, dotenv_err
  local function lookup(name)
    local v = os.getenv(name)
    if v ~= nil then return v end
    if dotenv_vars == nil and dotenv_err == nil then
      local envfile = require "mw.envfile"
      local path = (dir == "/" and "" or dir) .. "/.env"
      required[#required + 1] = path
      local vars, why, code = envfile.read(path)
      if vars then dotenv_vars = vars
      elseif code == "ENOENT" then dotenv_vars = {}          -- no .env: only the environment
      else dotenv_err = ".env " .. why end
    end
    if dotenv_err then error(dotenv_err, 0) end
    return dotenv_vars[name]
  end
  local function caller_error(msg, level)
    -- the position of the stack file's call, so the message has its file:line
    local info = debug.getinfo(level + 1, "Sl")
    if info and info.currentline and info.currentline > 0 then msg = info.short_src .. ":" .. info.currentline .. ": " .. msg end
    error(msg, 0)
  end
  env.mw = setmetatable({
    env = function(name, default)
      if type(name) ~= "string" or not name:find("^[%a_][%w_]*$") then
        error("mw.env: give a variable name such as \"DB_HOST\"", 2)
      end
      if default ~= nil and type(default) ~= "string" and type(default) ~= "number" then
        error("mw.env: the default must be a string or a number", 2)
      end
      local ok, v = pcall(lookup, name)
      if not ok then caller_error("mw.env: " .. tostring(v), 2) end
      -- as ${NAME:-default}: an empty value takes the default too
      if v == nil or v == "" then return default ~= nil and tostring(default) or v end
      return v
    end,
    interpolate = function(s)
      if type(s) ~= "string" then error("mw.interpolate: give a string", 2) end
      local envfile = require "mw.envfile"
      local ok, out, why = pcall(envfile.interpolate, s, lookup)
      if not ok then caller_error("mw.interpolate: " .. tostring(out), 2) end
      if not out then caller_error("mw.interpolate: " .. why, 2) end
      return out
    end,
  }, { __metatable = false, __newindex = function() error("mw is read-only", 2) end,
       __index = function(_, k) error(string.format("mw.%s does not exist (mw.env, mw.interpolate)", keyname(k)), 2) end })

  env._G = env
  -- Plain field, read by the stack loader with rawget; the reloader watches these files.
  env.__required = required

  local function names()
    local t = {}
    for k in next, env do if type(k) == "string" then t[#t + 1] = k end end
    table.sort(t)
    return t
  end

  setmetatable(env, {
    __index = function(_, k)
      if DENIED[k] then error(string.format("'%s' %s", k, DENIED[k]), 2) end
      local hint = sandbox.suggest(k, names())
      error(string.format("undeclared global '%s'%s", keyname(k),
        hint and string.format(" (did you mean '%s'?)", hint) or ""), 2)
    end,
    __newindex = function(_, k)
      error(string.format("assignment to undeclared global '%s' (use local)", keyname(k)), 2)
    end,
    __metatable = false,
  })
  return env
end

sandbox.modules = STDLIB

return sandbox
