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

-- Two components naming one image with different pull policies: the early lookups of a start
-- and the lookups under way are per image and policy, so neither gets the other's answer.
t.test("image lookups are keyed by image and pull policy: pull = never does not answer for missing", function()
  local core = require "mw.core"
  local here, calls = {}, { inspect = 0, pull = 0 }
  local engine = {
    image_inspect = function(_, name)
      calls.inspect = calls.inspect + 1
      core.sleep(0.01)                  -- a lookup under way while the other is asked
      local ref = name:find(":[^/]*$") and name or (name .. ":latest")
      if here[ref] then return { Id = "sha256:" .. ref } end
      return nil, "no such image: " .. name
    end,
    pull = function(_, ref) calls.pull = calls.pull + 1 here[ref] = true return true end,
  }
  local comps = { never = { name = "never", image = "img:1", pull = "never", depends_on = {} },
                  missing = { name = "missing", image = "img:1", depends_on = {} },
                  also = { name = "also", image = "img:1", pull = "missing", depends_on = {} } }
  local sup = supervisor.new { engine = engine,
    stack = { name = "img", order = { "never", "missing", "also" }, components = comps } }
  t.ok(select(1, sup:image_key(comps.never, "img:1")) ~= select(1, sup:image_key(comps.missing, "img:1")))
  t.eq(sup:image_key(comps.missing, "img:1"), sup:image_key(comps.also, "img:1"), "the default is missing")
  -- the start's early lookups: the first component's policy is never
  sup.start_images, sup.start_left = {}, 3
  local got = {}
  local tasks = {}
  for _, name in ipairs { "never", "missing", "also" } do
    tasks[#tasks + 1] = core.spawn(function()
      got[name] = { sup:image_id({ key = name, def = comps[name] }, "img:1") }
    end, "lookup-" .. name)
  end
  for _, task in ipairs(tasks) do core.join(task) end
  t.eq(got.never[1], nil, "never: not here, not pulled")
  t.match(tostring(got.never[2]), 'pull = "never"')
  t.eq(got.missing[1], "sha256:img:1", "missing: pulled, not the never one's error")
  t.eq(got.also[1], "sha256:img:1", "the same policy shares the lookup")
  t.eq(calls.pull, 1, "one pull for the two components under missing")
  -- kept for the bring-ups: each policy finds its own early answer
  t.eq(sup:image_id({ key = "missing", def = comps.missing }, "img:1"), "sha256:img:1")
  t.eq(select(2, sup:image_id({ key = "never", def = comps.never }, "img:1")):match('pull = "never"'), 'pull = "never"')
  -- mw run --pull overrides every component's: one key for all
  sup.pull_override = "missing"
  t.eq(sup:image_key(comps.never, "img:1"), sup:image_key(comps.missing, "img:1"))
end)

t.test("a die event that says 0 is checked against the container's state (moby 20.10 can write 0 there)", function()
  local sup, c, decided = harness(policy.on_failure { backoff = backoff.constant { delay = 0 } })
  local inspected = 0
  local exit_code = 3
  sup.engine = { inspect = function() inspected = inspected + 1 return { State = { Running = false, ExitCode = exit_code } } end }
  sup.stack.components.a.job = true
  local seen
  sup.schedule = function(_, inst, action, _, record)
    seen = { action = action, code = record.exit_code }
    decided[#decided + 1] = seen
    inst.handling = false
  end
  local function die(code)
    c.state, c.id, c.handling = "running", "abc123", false
    sup:on_container_event { Action = "die", Actor = { ID = "abc123",
      Attributes = { ["mw.component"] = "a", ["mw.instance"] = "1", exitCode = code } } }
  end
  die("0")
  t.eq(inspected, 1, "a 0 is read again")
  t.ok(c.state ~= "completed", "the job did not complete on the event's 0")
  t.eq(seen and seen.code, 3, "the failure has the state's exit code")
  t.eq(seen.action, "restart")
  die("2")
  t.eq(inspected, 1, "another code is taken as it is: no inspect")
  t.eq(seen.code, 2)
  exit_code = 0
  die("0")
  t.eq(c.state, "completed", "a 0 the state confirms completes the job")
end)

t.test("holder starts of instances waiting for their dependencies take turns: two at once, earliest in the start order first", function()
  local core = require "mw.core"
  local order, comps = {}, {}
  for i = 1, 6 do
    local name = string.format("c%d", i)
    order[i] = name
    comps[name] = { name = name, depends_on = {} }
  end
  local sup = supervisor.new { engine = {}, stack = { name = "gate", order = order, components = comps } }
  local inst = function(i) return sup.comps["c" .. i] end
  local started, busy, most = {}, 0, 0
  -- c6, c5 and c2 begin their precreate first; c3 and c4 are still creating (marked) when the
  -- first turns are handed out, and must not be passed by c5 or c6
  local marks = {}
  for _, i in ipairs { 6, 5, 4, 3, 2 } do marks[i] = sup:ahead_mark(inst(i)) end
  local tasks = {}
  local function start(i)
    tasks[#tasks + 1] = core.spawn(function()
      local _ <close> = sup:holder_turn(inst(i))
      started[#started + 1] = i
      busy = busy + 1
      most = math.max(most, busy)
      core.sleep(0.02)
      busy = busy - 1
    end, "turn-" .. i)
  end
  start(6) start(5) start(2)
  core.sleep(0.01)
  start(4) start(3)
  -- one that is cancelled while it waits gives nothing away
  local gone = core.spawn(function() local _ <close> = sup:holder_turn(inst(1)) core.sleep(10) end, "turn-1")
  core.sleep(0)
  core.cancel(gone)
  for _, task in ipairs(tasks) do core.join(task) end
  t.eq(table.concat(started, " "), "2 3 4 5 6", "in the start order")
  t.eq(most, 2, "two at once")
  for _, m in pairs(marks) do getmetatable(m).__close() end
  t.eq(sup.holder_gate.busy, 0, "every turn given back")
  t.eq(#sup.holder_gate.queue, 0)
end)

os.exit(t.run())
