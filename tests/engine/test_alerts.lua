-- on_event hooks and `mw inspect -p` against the real engine: a hook posts the give-up record to
-- a webhook on 127.0.0.1 (tests/lib/httpd.lua, in this process); a hook that errors or loops
-- leaves the restarts to the policy; inspect asks the container port -p names.
local t = require "t"
local cjson = require "cjson"
local core = require "mw.core"
local http = require "mw.http"
local E = require "engine"
local run = require "run"
local httpd = require "httpd"

local function mw(args, timeout)
  return run.mw(args, { timeout = timeout or 60 })
end

-- A webhook that keeps every JSON body it is posted.
local function webhook_server()
  local got = {}
  local srv = httpd.start { ["/hook"] = function(req)
    local ok, doc = pcall(cjson.decode, req.body)
    got[#got + 1] = ok and doc or { raw = req.body }
    got[#got].arrived = core.time()
    return 204, ""
  end }
  return srv, got
end

local GIVE_UP = [==[
local webhook = require "mw.webhook"
return { name = "NAME",
  on_event = function(ev)
    if ev.event == "gave_up" then
      local res, err = webhook.post("HOOK/hook", { text = ev.component .. " gave up: " .. ev.message, event = ev },
        { headers = { ["X-Stack"] = ev.stack }, timeout = 5 })
      assert(res and res.status == 204, err)
    end
  end,
  components = {
    quit = { image = "IMAGE", command = { "sh", "-c", "exit 4" }, restart = function() return "give_up" end },
    idle = { image = "IMAGE", command = { "sleep", "1000" } },
  } }
]==]

t.test("a stack's on_event hook posts the give-up record to a loopback webhook", function()
  local srv, got = webhook_server()
  local file, stack = E.stack("hook", (GIVE_UP:gsub("HOOK", srv.url)))
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "gave_up", component = "quit" }, 240)
  t.wait_for(function() return #got >= 1 end, 60, "the webhook's post")
  local rec = got[1].event
  t.eq(rec.event, "gave_up")
  t.eq(rec.component, "quit")
  t.eq(rec.instance, "quit")
  t.eq(rec.stack, stack)
  t.eq(rec.reason, "exited")
  t.eq(rec.exit_code, 4)
  t.eq(rec.level, "error")
  t.eq(rec.state, "gave_up")
  t.eq(rec.restarts, 0)
  t.match(rec.message, "exited with code 4")
  t.eq(type(rec.time), "number")
  t.match(got[1].text, "^quit gave up: ")
  print(string.format("# the webhook had the give-up %.1f ms after mw logged it", (got[1].arrived - rec.time) * 1000))
  for _, ev in ipairs(h.events()) do t.ok(ev.event ~= "hook_error", "no hook error: " .. tostring(ev.msg)) end
  t.eq(h.stop(), 0)
  t.eq(#got, 1, "one give-up, one post")
  srv.stop()
end)

-- Errors on "failed", loops on everything else: neither may hold up the policy's restarts.
local BROKEN = [==[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME",
  on_event = function(ev)
    if ev.event == "failed" then error("hook broke on " .. ev.event) end
    while true do end
  end,
  components = {
    crash = { image = "IMAGE", command = { "sh", "-c", "exit 1" },
      restart = policy.on_failure { backoff = backoff.constant { delay = "200ms" },
                                    limit = { restarts = 3, within = "1m" }, ["then"] = "give_up" } },
  } }
]==]

-- The value of one series in a Prometheus text, or 0.
local function series(text, name)
  local v = text:match("\n" .. name:gsub("[%[%]%(%)%.%-%+%*%?%^%$]", "%%%0") .. " (%S+)")
  return tonumber(v) or 0
end

t.test("a hook that errors or loops does not stop the restarts; logged once per kind, counted in /metrics", function()
  local file = E.stack("badhook", BROKEN)
  local h = E.mw({ "run", "--log-format", "json", "--listen", "127.0.0.1:0", file })
  local api = h.wait_event({ event = "api" }, 60)
  h.wait_event({ event = "gave_up", component = "crash" }, 240)
  local restarts = 0
  for _, ev in ipairs(h.events()) do
    if ev.event == "restarting" and ev.component == "crash" then restarts = restarts + 1 end
  end
  t.eq(restarts, 3, "the policy's three restarts all happened")
  local text
  t.wait_for(function()
    local res = http.request { url = api.url .. "metrics", timeout = 5 }
    text = res and res.body or ""
    -- three failures (error), and at least the restarts and the give-up (budget)
    return series(text, 'mw_hook_runs_total{result="error"}') == 3
      and series(text, 'mw_hook_runs_total{result="budget"}') >= 4
  end, 60, "the hook runs counted")
  t.eq(series(text, 'mw_hook_runs_total{result="ok"}'), 0)
  t.eq(series(text, "mw_hook_events_dropped_total"), 0)
  local errors = {}
  for _, ev in ipairs(h.events()) do if ev.event == "hook_error" then errors[#errors + 1] = ev end end
  local kinds = {}
  for _, ev in ipairs(errors) do kinds[#kinds + 1] = ev.kind end
  table.sort(kinds)
  t.same(kinds, { "budget", "error" }, "each kind said once")
  for _, ev in ipairs(errors) do
    t.match(ev.msg, "^on_event hook failed on %a+ %(.+%); supervision goes on")
    if ev.kind == "error" then t.match(ev.msg, "hook broke on failed") end
  end
  t.eq(h.stop(), 0)
end)

-- No heartbeat; one HTTP server on container port 9000, published on 127.0.0.1 (any host port).
local PORTS = [==[
return { name = "NAME", components = {
  web = { image = "IMAGE", ports = { "127.0.0.1::9000" },
    command = { "sh", "-c", [=[mkdir -p /w/debug && echo '{"port":9000}' > /w/debug/vars && exec httpd -f -p 9000 -h /w]=] } },
} }
]==]

t.test("inspect -p PORT asks that container port, published on 127.0.0.1", function()
  local file, stack = E.stack("inspp", PORTS)
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "started", component = "web" }, 240)
  local code, out, errs = mw({ "inspect", "web", "--stack", stack })
  t.eq(code, 1, "without -p: no heartbeat, no endpoint")
  t.match(errs, "has no heartbeat")
  -- the server may take a moment after the container starts: poll
  t.wait_for(function()
    code, out, errs = mw({ "inspect", "-p", "9000", "web", "--stack", stack })
    return code == 0
  end, 60, "inspect -p 9000 answering")
  t.eq(out, '{"port":9000}\n')
  code, out, errs = mw({ "inspect", "--port", "9000", file, "web" })
  t.eq(code, 0, errs)
  t.eq(out, '{"port":9000}\n', "--port, by the stack file")
  code, out, errs = mw({ "inspect", "-p", "9001", "web", "--stack", stack })
  t.eq(code, 1)
  t.eq(out, "")
  -- inside the container's namespace (root) nothing answers on 9001; through published ports
  -- (MW_HEARTBEAT_PATH=published) it is not published: one line either way
  t.match(errs, "^mw: component web: .*9001")
  t.ok(not errs:find("\n.", 1), "one line: " .. errs)
  code, out, errs = mw({ "inspect", "-p", "http", "web", "--stack", stack })
  t.eq(out, "")
  t.eq(code, 2, "a port that is not a number is a usage error")
  t.match(errs, "%-p wants a container port")
  -- without a running mw too: the engine's published port
  t.eq(h.stop(), 0)
  code, out, errs = mw({ "inspect", "-p", "9000", "web", "--stack", stack })
  t.eq(code, 0, errs)
  t.eq(out, '{"port":9000}\n')
end)

os.exit(E.run(t))
