-- An instance's states and transitions, written once in mw.instance: the code holds to the
-- table (every state and event it names is in it), the supervisor's recovery driven through a
-- fake engine takes only declared transitions, and an undeclared one raises in tests and is
-- logged once (and done) in a running mw.
local t = require "t"
local log = require "mw.log"
local policy = require "mw.policy"
local backoff = require "mw.backoff"
local instance = require "mw.instance"
local supervisor = require "mw.supervisor"

log.quiet = true
instance.strict = true

local FILES = { "supervisor", "containers", "heartbeat", "events", "rollout", "autoscaler", "userops", "instance" }

local function source(name)
  local f = assert(io.open("lua/mw/" .. name .. ".lua"))
  local text = f:read("a")
  f:close()
  return text
end

local STATE = {}
for _, s in ipairs(instance.STATES) do STATE[s] = true end

t.test("the table: 13 states, and every row names known states", function()
  t.eq(#instance.STATES, 13)
  for _, row in ipairs(instance.TRANSITIONS) do
    t.ok(STATE[row.to], "row " .. row.event .. ": unknown target " .. tostring(row.to))
    t.ok(#row.from > 0, "row " .. row.event .. " from no state")
    for _, from in ipairs(row.from) do t.ok(STATE[from], "row " .. row.event .. ": unknown state " .. from) end
    t.ok(type(row.action) == "string" and row.action:find("^Sup:"), "row " .. row.event .. " names its method")
  end
  for _, s in ipairs(instance.STATES) do
    if s ~= "gone" then
      local leaves = false
      for _, row in ipairs(instance.TRANSITIONS) do
        for _, from in ipairs(row.from) do
          if from == s and row.to ~= s then leaves = true end
        end
      end
      t.ok(leaves, s .. " has a way out")
    end
  end
end)

t.test("every state the supervisor's code names is in the table, every transition it makes is a row", function()
  local checked = 0
  for _, name in ipairs(FILES) do
    local text = source(name)
    -- comparisons and assignments: c.state == "x", d.state ~= "x", state = "x"
    for s in text:gmatch('state%s*[=~]=%s*"([%w_]+)"') do
      t.ok(STATE[s], name .. ".lua compares with a state not in the table: " .. s)
      checked = checked + 1
    end
    -- the transitions: transition(self, c, "event", "state") and ... and "a" or "b"
    for event, rest in text:gmatch('transition%(self, [%w_]+, "([%w_]+)", ([^\n]*)%)') do
      local targets = 0
      for to in rest:gmatch('"([%w_]+)"') do
        targets = targets + 1
        local row = false
        for _, r in ipairs(instance.TRANSITIONS) do
          if r.event == event and r.to == to then row = true end
        end
        t.ok(row, name .. ".lua: no row for event " .. event .. " to " .. to)
        checked = checked + 1
      end
      t.ok(targets > 0, name .. ".lua: a transition by " .. event .. " with no literal target")
    end
    -- nothing writes the state but instance.transition
    for line in text:gmatch("[^\n]+") do
      if line:find("%.state%s*=[^=]") and name ~= "instance" then
        error(name .. ".lua writes a state without instance.transition: " .. line)
      end
    end
  end
  t.ok(checked >= 30, "found " .. checked .. " uses")
  -- and every row is made somewhere
  local made = {}
  for _, name in ipairs(FILES) do
    for event in source(name):gmatch('transition%(self, [%w_]+, "([%w_]+)"') do made[event] = true end
  end
  for _, row in ipairs(instance.TRANSITIONS) do t.ok(made[row.event], "no code makes the event " .. row.event) end
end)

t.test("docs/internals.md shows the table as the data has it", function()
  local f = assert(io.open("docs/internals.md"))
  local doc = f:read("a")
  f:close()
  t.ok(doc:find(instance.markdown(), 1, true), "docs/internals.md: paste instance.markdown() under \"The supervisor\"")
end)

t.test("an undeclared transition raises in tests; in a running mw it is logged once and done", function()
  local changed = 0
  local sup = { changed = function() changed = changed + 1 end }
  local inst = { key = "x", state = "gone" }
  local ok, err = pcall(instance.transition, sup, inst, "bring_up", "waiting")
  t.eq(ok, false)
  t.match(err, "undeclared state transition of x: gone %-%-bring_up%-%-> waiting")
  t.eq(inst.state, "gone", "not made")
  instance.strict = false
  local warned = {}
  log.hook = function(level, _, event, msg) if level == "warn" then warned[#warned + 1] = event .. ": " .. msg end end
  instance.transition(sup, inst, "bring_up", "waiting")
  inst.state = "gone"
  instance.transition(sup, inst, "bring_up", "waiting")
  log.hook = nil
  instance.strict = true
  t.eq(inst.state, "waiting", "made anyway: no behaviour changes")
  t.eq(changed, 2)
  t.eq(#warned, 1, "logged once")
  t.match(warned[1], "^state: undeclared state transition gone %-%-bring_up%-%-> waiting")
  -- a declared one passes; staying put is no transition
  instance.transition(sup, inst, "bring_up", "waiting")
  t.eq(changed, 2)
  inst.state = "starting"
  instance.transition(sup, inst, "answered", "healthy")
  t.eq(inst.state, "healthy")
  -- what the test above added is not left for the check at the end
  for i = #instance.undeclared, 1, -1 do
    if instance.undeclared[i].key == "x" then table.remove(instance.undeclared, i) end
  end
end)

-- A fake engine: one container that exits when asked, restarts in place, and is removed.
local function fake_engine()
  local e = { calls = {} }
  local status = "running"
  local function call(name) e.calls[#e.calls + 1] = name end
  function e:inspect(id)
    call("inspect")
    return { Id = id, State = { Status = status, Pid = 0, ExitCode = 1, StartedAt = "2026-12-06T10:00:00Z" },
             NetworkSettings = {} }
  end
  function e:start() call("start") status = "running" return true end
  function e:kill() call("kill") status = "exited" return true end
  function e:stop() call("stop") status = "exited" return true end
  function e:remove() call("remove") return true end
  function e:ping() return true end
  e.exit = function() status = "exited" end
  return e
end

t.test("a recovery, a give-up and a retirement through the real supervisor take declared transitions", function()
  local restart = policy.on_failure { backoff = backoff.constant { delay = 0 }, limit = { restarts = 1, within = "1h" } }
  local def = { name = "a", image = "busybox", restart = restart, depends_on = {} }
  local engine = fake_engine()
  local sup = supervisor.new { engine = engine, stack = { name = "st", order = { "a" }, components = { a = def } } }
  local c = sup.comps.a
  local seen = {}
  sup.on_change = function(inst) if inst then seen[#seen + 1] = inst.state end end
  -- as if brought up: its container runs
  instance.transition(sup, c, "bring_up", "waiting")
  c.id = "c0ffee"
  t.ok(sup:post_start(c, "started"))
  t.eq(c.state, "running")
  -- it exits: backoff, then restarted in place
  engine.exit()
  sup:failure(c, "exited", { exit_code = 1 })
  t.wait_for(function() return c.state == "running" and not c.handling end, 5, "restarted")
  t.eq(c.restarts, 1)
  -- again within the limit's hour: the policy gives up
  engine.exit()
  sup:failure(c, "exited", { exit_code = 1 })
  t.eq(c.state, "gave_up")
  -- retired (the scale went down): gone, its container removed
  sup:retire({ c }, "scaled down")
  t.eq(c.state, "gone")
  t.wait_for(function() return engine.calls[#engine.calls] == "remove" end, 5, "removed")
  t.same(seen, { "waiting", "running", "backoff", "restarting", "running", "gave_up", "gone" })
  sup:stop()
end)

t.test("the user's stop is no failure and stays; the user's restart of a given-up one starts afresh", function()
  local restart = policy.on_failure { backoff = backoff.constant { delay = 0 }, limit = { restarts = 1, within = "1h" } }
  local def = { name = "a", image = "busybox", restart = restart, depends_on = {}, stop_grace = 3 }
  local engine = fake_engine()
  local grace
  function engine:stop(_, t_) grace = t_ self.calls[#self.calls + 1] = "stop" return true end
  local sup = supervisor.new { engine = engine, stack = { name = "st", order = { "a" }, components = { a = def } } }
  local c = sup.comps.a
  instance.transition(sup, c, "bring_up", "waiting")
  c.id = "c0ffee"
  t.ok(sup:post_start(c, "started"))
  t.same(sup:user_stop({ "a" }), { "a" })
  t.eq(c.state, "user_stopped")
  t.eq(grace, 3, "its stop_grace")
  engine.exit()
  sup:failure(c, "exited", { exit_code = 143 })
  t.eq(c.state, "user_stopped", "its exit is no failure")
  t.eq(c.failures or 0, 0)
  t.eq(sup:user_stop({ "nosuch" }), nil)
  -- restart: running again
  t.same(sup:user_restart({ "a" }), { "a" })
  t.eq(c.state, "running")
  -- two failures: the limit of one restart gives up
  engine.exit()
  sup:failure(c, "exited", { exit_code = 1 })
  t.wait_for(function() return c.state == "running" and not c.handling end, 5, "restarted")
  engine.exit()
  sup:failure(c, "exited", { exit_code = 1 })
  t.eq(c.state, "gave_up")
  t.eq(#c.history, 2)
  sup:user_restart({})
  t.eq(c.state, "running")
  t.eq(#c.history, 0, "history cleared")
  -- so the policy restarts it once more before giving up
  engine.exit()
  sup:failure(c, "exited", { exit_code = 1 })
  t.wait_for(function() return c.state == "running" and not c.handling end, 5, "restarted afresh")
  sup:stop()
end)

t.test("no undeclared transition was made by any test in this file", function()
  t.same(instance.undeclared, {})
end)

os.exit(t.run())
