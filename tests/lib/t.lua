-- A tiny test harness: each test file registers cases and calls t.run(); the runner
-- (scripts/test.sh) adds up the "# N passed, N failed, N skipped" lines of every file.
-- After the cases, t.run() runs the after-hooks (t.after), removes the temp paths of
-- tests/lib/tmp.lua, and checks that the file left no handle open, no reference anchored and
-- no task running (docs/testing.md).
local core = require "mw.core"
local tmp = require "tmp"

local t = {}
local cases = {}
local after = {}
-- What the core holds in the registry on Lua's behalf: slot -> value (luaL_ref's free slots
-- hold numbers; slots 1 and 2 are Lua's own). Only to name leftovers: core.stats() counts.
local function anchors()
  local out = {}
  for k, v in pairs(debug.getregistry()) do
    if math.type(k) == "integer" and k > 2 and type(v) ~= "number" then out[k] = v end
  end
  return out
end

local at_start = core.stats()   -- before the file made anything: what a drained loop holds
local anchors_at_start = anchors()
t.LEAK_WAIT = 5                 -- seconds for closes and cancels to land (a loaded machine)

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

-- Polls cond() until it returns a true value or the deadline passes.
-- A container's Env list ({ "K=v", ... }) -> { K = v }.
function t.env_map(list)
  local out = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

function t.wait_for(cond, seconds, what)
  local deadline = core.now() + (seconds or 10)
  while true do
    local v = cond()
    if v then return v end
    if core.now() > deadline then error("timed out waiting for " .. (what or "condition"), 2) end
    core.sleep(0.02)
  end
end

-- Registers fn to run once after the file's cases, before the temp paths go and the leak check:
-- for what the file or a helper keeps open across cases (a server, an engine's containers).
-- Hooks run in the order they were registered; one that fails fails the file.
function t.after(fn) after[#after + 1] = fn end

-- What the file leaves behind beyond what the loop held at its start -> a list of phrases.
local function leftovers(s)
  local what = {}
  if s.handles > at_start.handles then
    what[#what + 1] = string.format("%d handle(s) still open", s.handles - at_start.handles)
  end
  if s.anchored > at_start.anchored then
    what[#what + 1] = string.format("%d reference(s) still anchored in the registry", s.anchored - at_start.anchored)
  end
  if s.tasks > at_start.tasks then
    what[#what + 1] = string.format("%d task(s) still running", s.tasks - at_start.tasks)
  end
  return what
end

-- A list as text, at most 6 items.
local function some(list)
  table.sort(list)
  if #list > 6 then list = { table.unpack(list, 1, 6) }; list[7] = "..." end
  return table.concat(list, ", ")
end

-- Names what it can of what the core still holds -> "" or "; running: ...; anchored: ...".
-- Live tasks are in a registry table of the core's (coroutine -> task, "mw.task NAME (state)");
-- a task's own two anchors go with it. Handles have no Lua face: only what they anchor shows.
local function names_of_leftovers()
  local now, tasks, own = anchors(), {}, {}
  for _, v in pairs(now) do
    if type(v) == "table" and type(next(v)) == "thread" then
      for co, task in pairs(v) do
        local name = tostring(task)
        if co ~= coroutine.running() and name:find("^mw%.task ") then
          tasks[#tasks + 1] = name
          own[co], own[task] = true, true
        end
        own[v] = true
      end
    end
  end
  local other = {}
  for slot, v in pairs(now) do
    if anchors_at_start[slot] ~= v and not own[v] then
      local ok, s = pcall(tostring, v)
      s = ok and s or type(v)
      other[#other + 1] = #s > 60 and s:sub(1, 57) .. "..." or s
    end
  end
  return (#tasks > 0 and "; running: " .. some(tasks) or "") .. (#other > 0 and "; anchored: " .. some(other) or "")
end

-- Waits (up to t.LEAK_WAIT) for the loop to drain -> nil, or one line saying what is left:
-- the core's counts, and what of it Lua can name.
function t.leak_check()
  local deadline = core.now() + t.LEAK_WAIT
  while true do
    collectgarbage()
    collectgarbage()
    local s = core.stats()
    local what = leftovers(s)
    if #what == 0 then return nil end
    if core.now() > deadline then
      return string.format("%s after the cases (handles %d, anchored %d, tasks %d; at the start %d, %d, %d)%s",
        table.concat(what, ", "), s.handles, s.anchored, s.tasks,
        at_start.handles, at_start.anchored, at_start.tasks, names_of_leftovers())
    end
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
  for _, fn in ipairs(after) do
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then
      failed = failed + 1
      print("FAIL after the cases: " .. tostring(err))
    end
  end
  tmp.cleanup()
  local leak = t.leak_check()
  if leak then
    failed = failed + 1
    print("FAIL leak check: " .. leak)
  end
  print(string.format("# %d passed, %d failed, %d skipped", passed, failed, skipped))
  return failed == 0 and 0 or 1
end

return t
