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

t.test("Sup:decide reads a policy's answer with policy.check_result, as it always did", function()
  local answer
  local sup, c = harness(function() return table.unpack(answer) end)
  local record = { component = "a", instance = 1, reason = "exited", exit_code = 1, oom = false,
                   uptime = 0, time = 0, restarts = 0, history = {} }
  local warned = {}
  log.hook = function(level, _, event, msg) if level == "warn" then warned[#warned + 1] = event .. ": " .. msg end end
  local function decide(...)
    answer = table.pack(...)
    warned = {}
    return sup:decide(c, record)
  end
  local action, delay = decide("restart", "500ms")
  t.eq(action, "restart") t.eq(delay, 0.5) t.eq(#warned, 0)
  action, delay = decide("give_up")
  t.eq(action, "give_up") t.eq(delay, 0)
  action, delay = decide("restart", math.huge)
  t.eq(action, "restart")
  t.eq(delay, 24 * 3600, "a delay past a day waits a day")
  delay = select(2, decide("restart", "1000h"))
  t.eq(delay, 24 * 3600)
  action = decide("restart", 0, nil)
  t.eq(action, "restart")
  action = decide("removed-or-restart", 1)
  t.eq(action, "restart", "an unknown action: the default policy")
  t.eq(warned[1], 'policy_error: restart policy failed (returned an unknown action "removed-or-restart"); ' ..
    "the default policy applies")
  decide("restart", {})
  t.eq(warned[1], "policy_error: restart policy failed (returned a bad delay (table)); the default policy applies")
  decide("restart", "soon")
  t.match(warned[1], '^policy_error: restart policy failed %(returned a bad delay: bad duration "soon"')
  decide("restart", 0 / 0)
  t.match(warned[1], "^policy_error: restart policy failed %(returned a bad delay")
  decide("restart", -1)
  t.match(warned[1], "^policy_error: restart policy failed %(returned a bad delay")
  log.hook = nil
end)

t.test("no undeclared state transition was made by any test in this file", function()
  t.same(instance.undeclared, {})
end)

os.exit(t.run())
