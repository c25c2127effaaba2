-- Unit tests of lua/mw/alerts.lua and stdlib mw.webhook: on_event hooks fed by log events,
-- posting to a loopback webhook (tests/lib/httpd.lua); a hook that errors, loops, allocates,
-- yields or waits too long is logged once per kind and counted, and the next event still runs.
if not pcall(require, "t") then package.path = "tests/lib/?.lua;" .. package.path end
local t = require "t"
local core = require "mw.core"
local cjson = require "cjson"
local log = require "mw.log"
local stack = require "mw.stack"
local alerts = require "mw.alerts"
local webhook = require "mw.webhook"
local httpd = require "httpd"
local tmp = require "tmp"

local dir = tmp.dir()

-- A stack whose on_event source is `hook` (with URL substituted), and a context for mw.alerts.
local function ctx_for(hook, url, extra)
  local src = string.format([[
local webhook = require "mw.webhook"
return { name = "alerts", on_event = %s, components = {
  web = { image = "busybox" %s },
  db = { image = "busybox" },
} }]], (hook:gsub("URL", url or "")), extra or "")
  local s, err = stack.load(dir .. "/stack.lua", { source = src, cwd = dir })
  assert(s, err)
  return { stack = s, sup = { comps = { web = { name = "web" }, ["web-2"] = { name = "web" }, db = { name = "db" } } } }
end

-- The stack file's environment, through a hook's _ENV: the test gives hooks a global to report by.
local function env_of(fn)
  for i = 1, 10 do
    local name, value = debug.getupvalue(fn, i)
    if name == "_ENV" then return value end
    if not name then break end
  end
  error("no _ENV")
end

-- Captures what mw logs (and keeps it off stdout) while fn runs.
local function quiet(fn)
  local out, warned = log.out, {}
  log.out = assert(io.open("/dev/null", "w"))
  local prev = log.hook
  log.hook = function(level, comp, event, msg, fields)
    if event == "hook_error" then warned[#warned + 1] = { level = level, comp = comp, msg = msg, kind = fields.kind } end
  end
  local ok, err = pcall(fn, warned)
  log.out:close()
  log.out = out
  log.hook = prev
  if not ok then error(err, 0) end
  return warned
end

-- A webhook that records what it got; a slow one answers only once srv.release() is called.
local function webhook_server(slow)
  local got, released, busy = {}, false, 0
  local srv = httpd.start { ["/hook"] = function(req)
    busy = busy + 1
    while slow and not released do core.sleep(0.02) end
    busy = busy - 1
    got[#got + 1] = { body = req.body, head = req.head }
    return 200, "thanks"
  end }
  function srv.release()
    released = true
    t.wait_for(function() return busy == 0 end, 10, "the slow webhook done")
    srv.stop()
  end
  return srv, got
end

t.test("a stack's hook posts the give-up record to a loopback webhook, and gets the answer", function()
  local srv, got = webhook_server()
  local answers = {}
  local warned = quiet(function()
    local ctx = ctx_for([[function(ev)
      local res, err = webhook.post("URL/hook", { text = ev.component .. " " .. ev.event, event = ev },
        { headers = { ["X-Token"] = "abc" }, timeout = 5 })
      ANSWERS(res and res.status, res and res.body, err)
    end]], srv.url)
    -- the hook reports back through a global the test gives its environment
    local a = alerts.start(ctx)
    rawset(env_of(ctx.stack.on_event), "ANSWERS", function(...) answers[#answers + 1] = { ... } end)
    log.error("web-2", "gave_up", "exited with code 3; giving up (restart policy)", { reason = "exited", exit_code = 3 })
    log.info("web", "progress", "not an alert event")
    t.wait_for(function() return #answers == 1 end, 10, "the hook's answer")
    a:close()
  end)
  t.eq(#warned, 0, "no hook errors")
  t.eq(#got, 1, "one post")
  t.eq(answers[1][1], 200)
  t.eq(answers[1][2], "thanks")
  local body = cjson.decode(got[1].body)
  t.eq(body.text, "web gave_up")
  t.eq(body.event.component, "web")
  t.eq(body.event.instance, "web-2")
  t.eq(body.event.reason, "exited")
  t.eq(body.event.exit_code, 3)
  t.eq(body.event.stack, "alerts")
  t.eq(body.event.level, "error")
  t.match(got[1].head, "\r\n[Xx]%-[Tt]oken: abc\r\n")
  t.match(got[1].head, "\r\n[Cc]ontent%-[Tt]ype: application/json\r\n")
  srv.stop()
end)

t.test("a webhook's long answer is cut off (an error the hook sees); a refused connection is one too", function()
  local srv = httpd.start { ["/big"] = function() return 200, ("x"):rep(alerts.MAX_ANSWER + 1) end }
  local closed = httpd.start {}
  local closed_url = closed.url
  closed.stop()
  local answers = {}
  local a
  local warned = quiet(function()
    local ctx = ctx_for(([[function()
      ANSWERS(webhook.post("URL/big", "x"))
      ANSWERS(webhook.post("CLOSED/none", "x", { timeout = 5 }))
    end]]):gsub("CLOSED", closed_url), srv.url)
    rawset(env_of(ctx.stack.on_event), "ANSWERS", function(res, err) answers[#answers + 1] = { res = res, err = err } end)
    a = alerts.start(ctx)
    log.error("web", "gave_up", "giving up")
    t.wait_for(function() return #answers == 2 end, 10, "both answers")
    a:close()
  end)
  t.eq(#warned, 0, "the hook itself did fine")
  t.eq(answers[1].res, nil)
  t.match(answers[1].err, "larger than")
  t.eq(answers[2].res, nil)
  t.ok(type(answers[2].err) == "string" and #answers[2].err > 0, "a reason")
  t.eq(a.stats.posts.failed, 2)
  t.eq(a.stats.runs.ok, 1)
  srv.stop()
end)

-- The hooks that misbehave, each with the kind it is counted under.
local BAD = {
  { "error", [[function(ev) error("boom " .. ev.event) end]] },
  { "budget", [[function() while true do end end]] },
  { "memory", [[function() return ("x"):rep(1e9) end]] },
  { "error", [[function() coroutine.yield(1) end]] },
  { "budget", [[function() while true do pcall(function() while true do end end) end end]] },
}

for _, case in ipairs(BAD) do
  t.test("a hook that fails (" .. case[1] .. ": " .. case[2]:sub(1, 40) .. ") is logged once and counted", function()
    local a
    local warned = quiet(function()
      local ctx = ctx_for(case[2])
      a = alerts.start(ctx)
      for _ = 1, 3 do log.warn("web", "failed", "exited with code 1; restart in 1s", { reason = "exited" }) end
      t.wait_for(function() return a.stats.runs[case[1]] == 3 end, 20, "three failed runs")
      a:close()
    end)
    t.eq(#warned, 1, "said once")
    t.eq(warned[1].kind, case[1])
    t.eq(warned[1].comp, "web")
    t.match(warned[1].msg, "on_event hook failed on failed")
    t.eq(a.stats.runs.ok, 0)
  end)
end

t.test("a hook whose webhook does not answer in time is cut at the run's limit", function()
  local srv = webhook_server(true)
  local old = alerts.TIMEOUT
  alerts.TIMEOUT = 0.5
  local a
  local warned = quiet(function()
    a = alerts.start(ctx_for([[function() webhook.post("URL/hook", "x") end]], srv.url))
    log.error("db", "gave_up", "giving up")
    local ok = pcall(t.wait_for, function() return a.stats.runs.timeout == 1 end, 20, "a timed-out run")
    if not ok then error("no timed-out run: " .. cjson.encode(a.stats)) end
    a:close()
  end)
  alerts.TIMEOUT = old
  t.eq(#warned, 1)
  t.eq(warned[1].kind, "timeout")
  srv.release()
end)

t.test("a component's own hook replaces the stack's for its events; no hook, no run", function()
  local seen = {}
  quiet(function()
    local ctx = ctx_for([[function(ev) SEEN("stack", ev.component or "-", ev.event) end]], nil,
      [[, on_event = function(ev) SEEN("web", ev.component, ev.event) end]])
    rawset(env_of(ctx.stack.on_event), "SEEN", function(...) seen[#seen + 1] = table.concat({ ... }, " ") end)
    local a = alerts.start(ctx)
    log.info("web", "healthy", "healthy")
    log.info("db", "healthy", "healthy")
    log.info(nil, "engine_back", "the engine answers again")
    local ok = pcall(t.wait_for, function() return #seen == 3 end, 10, "three hook runs")
    if not ok then error("three hook runs: " .. cjson.encode(a.stats) .. table.concat(seen, ";")) end
    a:close()
  end)
  table.sort(seen)
  t.same(seen, { "stack - engine_back", "stack db healthy", "web web healthy" })
end)

t.test("a reload's new hook is the one that runs; a reload that removes it stops the runs", function()
  local seen = {}
  local a
  quiet(function()
    local ctx = ctx_for([[function(ev) SEEN("old " .. ev.event) end]])
    rawset(env_of(ctx.stack.on_event), "SEEN", function(x) seen[#seen + 1] = x end)
    a = alerts.start(ctx)
    log.info("web", "healthy", "healthy")
    t.wait_for(function() return #seen == 1 end, 10, "the old hook's run")
    local new = ctx_for([[function(ev) SEEN("new " .. ev.event) end]])
    rawset(env_of(new.stack.on_event), "SEEN", function(x) seen[#seen + 1] = x end)
    ctx.stack = new.stack                     -- as mw.run's reload does
    log.warn("web", "failed", "exited")
    t.wait_for(function() return #seen == 2 end, 10, "the new hook's run")
    ctx.stack = ctx_for("nil").stack
    log.error("web", "gave_up", "giving up")
    t.eq(a.tail - a.head + 1, 0, "nothing queued without a hook")
    a:close()
  end)
  t.same(seen, { "old healthy", "new failed" })
end)

t.test("past the queue's cap the oldest events are dropped and counted", function()
  local a
  quiet(function()
    a = alerts.start(ctx_for([[function() end]]))
    for i = 1, alerts.MAX_QUEUED + 7 do log.warn("web", "failed", "failure " .. i) end
    t.eq(a.stats.dropped, 7)
    t.wait_for(function() return a.stats.runs.ok == alerts.MAX_QUEUED end, 20, "every queued event run")
    a:close()
  end)
end)

t.test("webhook.post refuses bad arguments with one line, outside a hook too", function()
  local function msg(...)
    local ok, err = pcall(webhook.post, ...)
    t.ok(not ok)
    return err
  end
  t.match(msg("ftp://x/"), "http:// or https://")
  t.match(msg("http://x/", 5), "string or a table")
  t.match(msg("http://x/", "b", { headers = { ["A\nB"] = "v" } }), "token")
  t.match(msg("http://x/", "b", { headers = { A = "v\r\nX: y" } }), "control characters")
  t.match(msg("http://x/", "b", { retries = 3 }), "unknown option retries")
  t.match(msg("http://x/", "b"), "only an on_event hook")
  t.eq(webhook.json({ a = { 1, 2, "x\n" }, b = true }), '{"a":[1,2,"x\\n"],"b":true}')
  t.ok(not pcall(webhook.json, { 1, x = 2 }))
end)

t.test("mw check: an on_event that is not a function is one line", function()
  for _, src in ipairs {
    'return { name = "x", on_event = "http://hook", components = { a = { image = "busybox" } } }',
    'return { name = "x", components = { a = { image = "busybox", on_event = 5 } } }',
  } do
    local s, err = stack.load(dir .. "/stack.lua", { source = src, cwd = dir })
    t.ok(not s)
    t.match(err, "on_event")
    t.match(err, "function%(event%)")
    t.ok(not err:find("\n"), err)
  end
end)

t.test("/metrics shows the runs by result, the posts and the drops", function()
  local metrics = require "mw.metrics"
  local c = metrics.collector()
  local text = c:render(nil, nil, 0, { runs = { ok = 2, error = 3, budget = 0, memory = 0, timeout = 1 },
    posts = { ok = 2, failed = 1 }, dropped = 7 })
  t.match(text, '\nmw_hook_runs_total{result="error"} 3\n')
  t.match(text, '\nmw_hook_runs_total{result="timeout"} 1\n')
  t.match(text, '\nmw_hook_posts_total{result="failed"} 1\n')
  t.match(text, '\nmw_hook_events_dropped_total 7\n')
  t.match(text, "# TYPE mw_hook_runs_total counter")
end)

os.exit(t.run())
