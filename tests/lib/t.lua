-- A tiny test harness: each test file registers cases and calls t.run(); the runner
-- (scripts/test.sh) adds up the "# N passed, N failed, N skipped" lines of every file.
local t = {}
local cases = {}

function t.test(name, fn) cases[#cases + 1] = { name = name, fn = fn } end
function t.skip(name, why) cases[#cases + 1] = { name = name, skip = why } end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function t.eq(got, want, msg)
  if got ~= want then
    error(string.format("%sgot %s, want %s", msg and (msg .. ": ") or "", show(got), show(want)), 2)
  end
end

function t.ok(v, msg)
  if not v then error(msg or "expected a true value", 2) end
  return v
end

function t.match(s, pat, msg)
  if type(s) ~= "string" or not s:find(pat) then
    error(string.format("%s%s does not match %q", msg and (msg .. ": ") or "", show(s), pat), 2)
  end
end

-- deep equality for plain tables
local function deq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
t.deq = deq
function t.same(got, want, msg)
  if not deq(got, want) then
    local ok, cjson = pcall(require, "cjson")
    local enc = ok and function(v) local s, r = pcall(cjson.encode, v); return s and r or tostring(v) end or tostring
    error(string.format("%sgot %s, want %s", msg and (msg .. ": ") or "", enc(got), enc(want)), 2)
  end
end

-- Polls cond() until it returns a true value or the deadline passes (needs mw.core).
function t.wait_for(cond, seconds, what)
  local core = require "mw.core"
  local deadline = core.now() + (seconds or 10)
  while true do
    local v = cond()
    if v then return v end
    if core.now() > deadline then error("timed out waiting for " .. (what or "condition"), 2) end
    core.sleep(0.02)
  end
end

function t.run()
  local passed, failed, skipped = 0, 0, 0
  local only = os.getenv("T_ONLY")
  for _, c in ipairs(cases) do
    if only and not c.name:find(only, 1, true) then -- luacheck: ignore 542 (filtered out)
    elseif c.skip then
      skipped = skipped + 1
      print("skip " .. c.name .. ": " .. c.skip)
    else
      local ok, err = xpcall(c.fn, debug.traceback)
      if ok then
        passed = passed + 1
        print("ok   " .. c.name)
      else
        failed = failed + 1
        print("FAIL " .. c.name .. ": " .. tostring(err))
      end
    end
  end
  print(string.format("# %d passed, %d failed, %d skipped", passed, failed, skipped))
  return failed == 0 and 0 or 1
end

return t
