-- Issue 17's first-restart rule against the real engine: a component that ran past its
-- policy's reset_after and fails is restarted at once (the logged decision says delay 0), a
-- second failure within reset_after gets the backoff's first delay, first_delay still gives
-- Docker's 100 ms, and a removal (which the engine signals first: a "kill" event) is still
-- told from a crash although a crash's die no longer inspects. And a cold start's overlap: a
-- dependent's container is created while it waits, and that one is started.
local t = require "t"
local core = require "mw.core"
local cjson = require "cjson"
local E = require "engine"
local run = require "run"

local STACK = [==[
local policy = require "mw.policy"
return { name = "NAME", components = {
  web = { image = "IMAGE", command = HTTPD, restart = policy.on_failure { reset_after = "1s" } },
  slow = { image = "IMAGE", command = HTTPD, restart = policy.always { first_delay = "100ms" } },
  crash = { image = "IMAGE", command = { "sh", "-c", "sleep 0.5; exit 3" },
    restart = policy.on_failure { reset_after = "1h" } },
} }
]==]

local function main_pid(stack, comp)
  local by = E.wait_running(stack, { comp }, 60)
  local x = by[comp][1]
  local info = assert(E.engine():inspect(x.Id))
  return info.State.Pid, x.Id
end

local function uptime(sdir, stack, comp)
  local code, out = run.mw({ "status", "--json", "--state-dir", sdir, "--stack", stack }, { timeout = 30 })
  if code ~= 0 then return nil end
  local ok, doc = pcall(cjson.decode, out)
  if not ok or type(doc) ~= "table" then return nil end
  local st = type(doc.stacks) == "table" and doc.stacks[1] or {}
  for _, c in ipairs(st.components or {}) do
    if c.name == comp then return tonumber(c.uptime) end
  end
  return nil
end

local function near(ev, want, what)
  local got = ev.delay
  t.ok(type(got) == "number" and math.abs(got - want) < 1e-6,
    string.format("%s: delay %s, want %s (%s)", what, tostring(got), want, cjson.encode(ev)))
end

local HTTPD = '{ "sh", "-c", "mkdir -p /w && echo ok > /w/x && exec httpd -f -p 8089 -h /w" }'
local STACK_SRC = STACK:gsub("HTTPD", function() return HTTPD end)

t.test("a component that ran past reset_after is restarted at once; a second failure backs off", function()
  local file, stack = E.stack("first", STACK_SRC)
  local sdir = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", sdir, file })
  h.wait_event({ event = "started", component = "web" }, 60)
  -- web's first failure: at once, restarted in place (the same container: its die, which the
  -- engine did not cause, is not taken for a removal)
  local pid, id = main_pid(stack, "web")
  local mark = #h.events()
  assert(core.kill(pid, "KILL"))
  local f, i = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(f.reason, "exited"); t.eq(f.action, "restart"); t.eq(f.exit_code, 137)
  near(f, 0, "the first failure")
  t.match(f.msg, "restart at once$")
  local r = h.wait_event({ event = "restarted", component = "web" }, 60, i)
  t.eq(r.container, id)
  -- then it runs stably, past its reset_after of 1 s as mw counts it: its next failure is a
  -- first one again (without the stable run it would be the second: 100 ms)
  t.wait_for(function() local u = uptime(sdir, stack, "web") return u and u > 1.2 end, 60, "web up for 1.2 s")
  pid = main_pid(stack, "web")
  mark = #h.events()
  assert(core.kill(pid, "KILL"))
  f = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  near(f, 0, "a failure after a stable run")
  -- crash fails on its own within its reset_after of 1 h: at once, then the backoff
  local c1, j = h.wait_event({ event = "failed", component = "crash" }, 60)
  local c2 = h.wait_event({ event = "failed", component = "crash" }, 60, j)
  near(c1, 0, "crash's first failure"); t.eq(c1.exit_code, 3)
  near(c2, 0.1, "crash's second failure within reset_after")
  t.match(c2.msg, "restart in 100ms$")
  -- a policy may still ask for Docker's 100 ms on the first
  local spid = main_pid(stack, "slow")
  mark = #h.events()
  assert(core.kill(spid, "KILL"))
  f = h.wait_event({ event = "failed", component = "slow" }, 30, mark)
  near(f, 0.1, "first_delay = 100ms")
  h.wait_event({ event = "restarted", component = "slow" }, 60, mark)
  t.eq(h.stop(), 0)
  t.ok(not h.text():find("mw: task .- failed"), "no task of mw failed")
end)

t.test("a forced remove is still a removal (its kill event comes first), recreated", function()
  local file, stack = E.stack("removed", STACK_SRC)
  local sdir = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", sdir, file })
  h.wait_event({ event = "started", component = "web" }, 60)
  local _, id = main_pid(stack, "web")
  local mark = #h.events()
  assert(E.engine():remove(id, { force = true }))
  local f, i = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(f.reason, "removed", cjson.encode(f))
  t.eq(f.action, "recreate")
  local r = h.wait_event({ event = "recreated", component = "web" }, 60, i)
  t.ok(r.container ~= id, "a new container")
  t.eq(h.stop(), 0)
end)

t.test("a dependent is created while it waits and that container is the one started (cold start overlap)", function()
  local src = ([==[
return { name = "NAME", components = {
  a = { image = "IMAGE",
        command = { "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; mkdir -p /w/debug && " ..
                    "echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" },
        heartbeat = { interval = "200ms", grace = "120s" } },
  b = { image = "IMAGE", command = HTTPD, depends_on = { a = "healthy" } },
} }
]==]):gsub("HTTPD", function() return HTTPD end)
  local file, stack = E.stack("pre", src)
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "started", component = "a" }, 60)
  -- a cannot be healthy before the test lets it: b's container exists, created, not started
  local pre
  t.wait_for(function()
    local by = E.containers(stack)
    pre = by.b and by.b[1]
    return pre ~= nil
  end, 60, "b's container created while a is not healthy")
  t.eq(pre.State, "created")
  t.eq(#E.containers(stack).b, 1)
  local a_id = E.containers(stack).a[1].Id
  local code, out = E.engine():exec(a_id, { "touch", "/go" })
  t.eq(code, 0, tostring(out))
  h.wait_event({ event = "healthy", component = "a" }, 60)
  local started = h.wait_event({ event = "started", component = "b" }, 60)
  t.eq(started.container, pre.Id, "the container made while waiting was started")
  t.eq(#E.containers(stack).b, 1)
  t.eq(h.stop(), 0)
end)

os.exit(E.run(t))
