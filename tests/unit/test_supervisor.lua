-- The supervisor's failure handling without an engine: fake instances whose failures go
-- through the real Sup:failure and the stack's policy; what it schedules is recorded.
local t = require "t"
local log = require "mw.log"
local policy = require "mw.policy"
local backoff = require "mw.backoff"
local supervisor = require "mw.supervisor"
local instance = require "mw.instance"

log.quiet = true
instance.strict = true      -- a state change not in mw.instance's table raises (and is recorded)

-- A supervisor over a one-component stack; schedule() records the action instead of acting.
local function harness(restart)
  local def = { name = "a", restart = restart, depends_on = {} }
  local sup = supervisor.new { engine = {}, stack = { name = "sv", order = { "a" }, components = { a = def } } }
  local decided = {}
  sup.schedule = function(_, c, action, delay, record)
    decided[#decided + 1] = { action = action, delay = delay, history = #record.history }
    c.handling = false
  end
  return sup, sup.comps.a, decided
end

local function fail(sup, c, n)
  for _ = 1, n do
    c.state = "running"
    sup:failure(c, "exited", { exit_code = 1 })
  end
end

t.test("a restart limit of 60 gives up at the 61st failure in its window (history was capped at 50)", function()
  local sup, c, decided = harness(policy.on_failure {
    backoff = backoff.constant { delay = 0 }, limit = { restarts = 60, within = "10m" }, ["then"] = "give_up" })
  fail(sup, c, 60)
  t.eq(decided[60].action, "restart", "the 60th failure is restarted")
  t.eq(decided[60].history, 59, "the 60th failure sees the 59 before it")
  fail(sup, c, 1)
  t.eq(decided[61].action, "give_up", "the 61st failure within 10m")
  t.eq(decided[61].history, 60)
end)

t.test("without a limit above 50 the history stays at the last 50", function()
  local sup, c, decided = harness(policy.on_failure { backoff = backoff.constant { delay = 0 } })
  fail(sup, c, 70)
  t.eq(#c.history, 50)
  t.eq(decided[70].history, 50)
  t.eq(decided[70].action, "restart")
end)

t.test("a policy function sees as much history as the largest limit in the stack", function()
  local big = policy.always { limit = { restarts = 80, within = "1h" } }
  local seen
  local sup, c = harness(function(f) seen = #f.history return "restart", 0 end)
  sup.stack.components.b = { name = "b", restart = big, depends_on = {} }
  fail(sup, c, 90)
  t.eq(seen, 80)
end)

t.test("no undeclared state transition was made by any test in this file", function()
  t.same(instance.undeclared, {})
end)

os.exit(t.run())
