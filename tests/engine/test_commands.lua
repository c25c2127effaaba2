-- The commands around a stack against the real engine: destroy, inspect, kill, logs, status.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local cjson = require "cjson"
local docker = require "mw.docker"
local E = require "engine"
local run = require "run"

local e = E.engine()

-- Runs `mw <args>` to completion with stdout and stderr apart -> exit code, stdout, stderr.
local function mw(args, timeout, extra_env)
  local code, out, err = run.mw(args, { timeout = timeout or 60, env = extra_env })
  return code, out, err
end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Every distinct match of pat in s, and whether any came twice.
local function distinct(s, pat)
  local seen, list, dup = {}, {}, false
  for m in s:gmatch(pat) do
    if seen[m] then dup = true else seen[m] = true list[#list + 1] = m end
  end
  return list, dup
end

-- (E.containers skips the builder's intermediate containers, which carry the stack's labels
-- but no component.)
local containers, wait_running, id_of = E.containers, E.wait_running, E.id_of

-- ---------------------------------------------------------------------------------------------

t.test("destroy removes a stack's containers, network and image, nothing else; twice is fine", function()
  local file_a, a, dir_a = E.stack("da", [[
return { name = "NAME", components = {
  app  = { build = "." },
  side = { image = "IMAGE", command = { "sleep", "1000" } },
} }
]])
  assert(fs.write_atomic(dir_a .. "/Dockerfile", "FROM " .. E.image() .. '\nCMD ["sleep", "1000"]\n'))
  local file_b, b = E.stack("db", [[
return { name = "NAME", components = { keep = { image = "IMAGE", command = { "sleep", "1000" } } } }
]])
  local ha = E.mw({ "run", "--log-format", "json", file_a })
  local hb = E.mw({ "run", "--log-format", "json", file_b })
  wait_running(a, { "app", "side" })
  wait_running(b, { "keep" })
  t.eq(ha.stop(), 0)
  t.eq(hb.stop(), 0)

  -- look-alikes: the stack's labels without used-by=millwright, and a name like ours
  local foreign = "mwtest-" .. E.run_id .. "-foreign"
  local made = {}
  local ok, err = pcall(function()
    made.net1 = assert(e:network_create(foreign, { ["mw.stack"] = a }))
    made.net2 = assert(e:network_create("mw-" .. a .. "-x", {}))
    made.ctr = assert(e:create(foreign, docker.container_spec {
      image = E.image(), cmd = { "sleep", "1000" },
      labels = { ["used-by"] = "nobody", ["mw.stack"] = a, ["mw.component"] = "app" },
    }))
    assert(e:volume_create(a .. "_data", { ["used-by"] = "millwright", ["mw.stack"] = a }))

    local code, out, errs = mw({ "destroy", "--stack", a })
    t.eq(code, 0, errs)
    t.match(out, "removed container " .. a:gsub("%p", "%%%0") .. "%-app\n")
    t.match(out, "removed container " .. a:gsub("%p", "%%%0") .. "%-side\n")
    -- each held component's network holder (mw.holder), after the containers
    t.match(out, "removed container .*removed network holder " .. a:gsub("%p", "%%%0") .. "%-app%.net\n")
    t.match(out, "removed network holder " .. a:gsub("%p", "%%%0") .. "%-side%.net\n")
    t.match(out, "removed network mw%-" .. a:gsub("%p", "%%%0") .. "\n")
    t.match(out, "removed image mw%-" .. a:gsub("%p", "%%%0") .. ":%x+\n")
    t.eq(lines(out), 6, out)
    t.eq(errs, "mw: kept 1 volume (use --volumes to remove it)\n")

    t.eq(#assert(e:list { label = { "used-by=millwright", "mw.stack=" .. a } }), 0, "the stack's containers are gone")
    t.eq(#assert(e:network_list { label = { "used-by=millwright", "mw.stack=" .. a } }), 0, "its network is gone")
    t.eq(#assert(e:image_list { label = { "used-by=millwright", "mw.stack=" .. a } }), 0, "its image is gone")
    t.ok(e:inspect(made.ctr), "the container without used-by=millwright is still there")
    t.ok(e:network_inspect(made.net1), "the network without used-by=millwright is still there")
    t.ok(e:network_inspect(made.net2), "the network named like ours is still there")
    t.ok(e:volume_inspect(a .. "_data"), "the volume is kept")
    t.ok(id_of(b, "keep"), "the other stack's container is still there")
    t.eq(#assert(e:network_list { label = { "used-by=millwright", "mw.stack=" .. b } }), 1, "and its network")
    t.ok(e:image_inspect(E.image()), "the test image (no stack label) is still there")

    code, out, errs = mw({ "destroy", "--stack", a })
    t.eq(code, 0, "twice")
    t.eq(out, "", "nothing removed the second time")
    t.match(errs, "kept 1 volume")

    code, out = mw({ "destroy", file_a, "--volumes" })
    t.eq(code, 0)
    t.eq(out, "removed volume " .. a .. "_data\n")
    code, out, errs = mw({ "destroy", file_a, "--volumes" })
    t.eq(code, 0)
    t.eq(out .. errs, "")
  end)
  if made.ctr then e:remove(made.ctr, { force = true }) end
  if made.net1 then e:network_remove(made.net1) end
  if made.net2 then e:network_remove(made.net2) end
  if not ok then error(err, 0) end
end)

-- ---------------------------------------------------------------------------------------------

t.test("two installations (--label, MW_LABEL) run one stack name side by side; neither sees or destroys the other's", function()
  local label = "lb" .. E.run_id
  E.labels[#E.labels + 1] = label
  local file, stack = E.stack("twins", [[
return { name = "NAME", components = {
  web = { image = "IMAGE", command = { "sleep", "1000" }, volumes = { "data:/data" } },
} }
]])
  local state = E.tmpdir()          -- shared: the two must not queue behind each other either
  local function mine(lbl)
    local out = {}
    for _, x in ipairs(assert(e:list { label = { "used-by=" .. lbl, "mw.stack=" .. stack, "mw.component=web" } })) do
      if x.State == "running" then out[#out + 1] = x end
    end
    return out
  end
  local ha = E.mw({ "run", "--log-format", "json", "--state-dir", state, file })
  local hb = E.mw({ "run", "--log-format", "json", "--state-dir", state, file }, { env = { "MW_LABEL=" .. label } })
  local a = t.wait_for(function() local l = mine("millwright") return #l == 1 and l[1] end, 60, "the default's web")
  local b = t.wait_for(function() local l = mine(label) return #l == 1 and l[1] end, 60, "the labelled web")
  t.eq(a.Names[1], "/" .. stack .. "-web", "the default installation's name is as before")
  t.eq(b.Names[1], "/" .. label .. "-" .. stack .. "-web", "the other installation's name has its label before it")
  t.ok(e:network_inspect("mw-" .. label .. "-" .. stack), "its own network")
  t.ok(e:volume_inspect(label .. "-" .. stack .. "_data"), "its own volume")

  -- each sees only its own, with a live mw each
  local code, out, errs = mw({ "status", "--stack", stack, "--json", "--state-dir", state })
  t.eq(code, 0, errs)
  local doc = cjson.decode(out).stacks[1]
  t.eq(#doc.components, 1, out)
  t.eq(tostring(doc.components[1].container):sub(1, 12), a.Id:sub(1, 12), "the default sees its container: " .. out)
  t.eq(doc.live, true, "and its live mw")
  code, out, errs = mw({ "status", "--label", label, "--stack", stack, "--json", "--state-dir", state })
  t.eq(code, 0, errs)
  doc = cjson.decode(out).stacks[1]
  t.eq(#doc.components, 1, out)
  t.eq(tostring(doc.components[1].container):sub(1, 12), b.Id:sub(1, 12), "the labelled one sees its container: " .. out)
  t.eq(doc.live, true)
  code, out = mw({ "status", "--json", "--state-dir", state }, 60, { "MW_LABEL=" .. label })
  t.eq(code, 0)
  for _, st in ipairs(cjson.decode(out).stacks) do
    for _, r in ipairs(st.components) do
      t.ok(tostring(r.container):sub(1, 12) ~= a.Id:sub(1, 12), "MW_LABEL: not the default's: " .. out)
    end
  end
  t.eq(ha.stop(), 0)
  t.eq(hb.stop(), 0)

  -- destroy by one installation leaves the other's container, network and volume
  code, out, errs = mw({ "destroy", "--stack", stack, "--volumes", "--label", label })
  t.eq(code, 0, errs)
  t.match(out, "removed container " .. (label .. "-" .. stack):gsub("%p", "%%%0") .. "%-web\n")
  t.ok(not e:inspect(b.Id), "the labelled container is gone")
  t.ok(e:inspect(a.Id), "the default's container is untouched")
  t.ok(e:network_inspect("mw-" .. stack), "and its network")
  t.ok(e:volume_inspect(stack .. "_data"), "and its volume")
  code, out, errs = mw({ "destroy", "--all", "--volumes" }, 60, { "MW_LABEL=" .. label })
  t.eq(code, 0, errs)
  t.eq(out, "", "--all of the labelled installation: nothing of its own is left")
  t.ok(e:inspect(a.Id), "--all of another installation does not reach the default's")
  code, out, errs = mw({ "destroy", "--stack", stack, "--volumes" })
  t.eq(code, 0, errs)
  t.match(out, "removed container " .. stack:gsub("%p", "%%%0") .. "%-web\n")
  t.ok(not e:inspect(a.Id), "the default's destroy removes its own")
  t.ok(not e:volume_inspect(stack .. "_data"))
end)

-- ---------------------------------------------------------------------------------------------

-- A component whose introspection JSON changes every 100 ms, and one without a heartbeat.
local VARS = [==[
return { name = "NAME", components = {
  vars = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
    command = { "sh", "-c", "mkdir -p /w/debug; i=0; "
      .. [=[while true; do i=$((i+1)); echo "{\"n\":$i}" > /w/debug/v.tmp; mv /w/debug/v.tmp /w/debug/vars; ]=]
      .. "sleep 0.1; done & exec httpd -f -p 8089 -h /w" } },
  quiet = { image = "IMAGE", command = { "sleep", "1000" } },
} }
]==]

t.test("inspect returns the component's live JSON, with or without a running mw", function()
  local file, stack = E.stack("insp", VARS)
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "vars" }, 60)
  local code, out, errs = mw({ "inspect", "vars", "--stack", stack })
  t.eq(code, 0, errs)
  t.match(out, '^{"n":%d+}\n$', "as received when stdout is not a terminal")
  local n1 = cjson.decode(out).n
  local n2
  t.wait_for(function()
    code, out = mw({ "inspect", "vars", "--stack", stack })
    t.eq(code, 0)
    n2 = cjson.decode(out).n
    return n2 > n1
  end, 10, "a later value than " .. n1)

  code, out, errs = mw({ "inspect", "quiet", "--stack", stack })
  t.eq(code, 1, "no heartbeat")
  t.eq(out, "")
  t.match(errs, "^mw: component quiet has no heartbeat")
  t.eq(lines(errs), 1, errs)

  -- no mw: the engine's port and the stack file's path
  t.eq(h.stop(), 0)
  -- the counter moves every ~100 ms: poll until a later value shows, rather than assume time passed
  t.wait_for(function()
    code, out, errs = mw({ "inspect", "vars", "--stack", stack })
    t.eq(code, 0, errs)
    return cjson.decode(out).n > n2
  end, 10, "a later value than " .. n2 .. " without mw")
  code, out, errs = mw({ "inspect", file, "vars" })
  t.eq(code, 0, errs)
  t.ok(cjson.decode(out).n, "by the stack file")
  code = mw({ "inspect", "quiet", file })
  t.eq(code, 1)
end)

-- A component whose heartbeat endpoint answers 500 with its reason (a CGI script), and one
-- whose endpoint is missing (busybox httpd's 404 page). Their grace is long: they stay
-- "starting", never restarted, while inspect asks them.
local FAILING = [==[
return { name = "NAME", components = {
  broken = { image = "IMAGE", heartbeat = { path = "/cgi-bin/vars", grace = "10m" },
    command = { "sh", "-c", [=[mkdir -p /w/cgi-bin && printf '#!/bin/sh\nprintf "HTTP/1.0 500 Internal Server Error\\r\\n]=]
      .. [=[Content-Type: text/plain\\r\\n\\r\\ndatabase unreachable: connection refused\\n"\n' > /w/cgi-bin/vars]=]
      .. " && chmod +x /w/cgi-bin/vars && exec httpd -f -p 8089 -h /w" } },
  missing = { image = "IMAGE", heartbeat = { grace = "10m" }, command = { "sh", "-c", "mkdir -p /w && exec httpd -f -p 8089 -h /w" } },
} }
]==]

t.test("inspect of an endpoint that answers an error prints its body, the status line on stderr, exit 1", function()
  local file, stack = E.stack("inspfail", FAILING)
  local h = E.mw({ "run", "--log-format", "json", file })
  local code, out, errs
  -- until httpd listens, inspect says "no answer"; wait for the answer itself
  t.wait_for(function()
    code, out, errs = mw({ "inspect", "broken", "--stack", stack })
    return errs:find("answered")
  end, 60, "an answer from broken: " .. tostring(errs))
  t.eq(code, 1, errs)
  t.eq(out, "database unreachable: connection refused\n", "the component's own explanation, as it sent it")
  t.match(errs, "^mw: component broken: http://127%.0%.0%.1:%d+/cgi%-bin/vars answered HTTP/1%.0 500 Internal Server Error\n$")
  t.wait_for(function()
    code, out, errs = mw({ "inspect", "missing", "--stack", stack })
    return errs:find("answered")
  end, 60, "an answer from missing: " .. tostring(errs))
  t.eq(code, 1, errs)
  t.match(out, "404 Not Found", "the 404 page")
  t.match(errs, "^mw: component missing: http://127%.0%.0%.1:%d+/debug/vars answered HTTP/1%.1 404 Not Found\n$")
  t.eq(h.stop(), 0)
end)

-- ---------------------------------------------------------------------------------------------

t.test("kill: unknown names and names in two stacks are one line and exit 1; kill removes", function()
  local dup = E.run_id .. "-dup"
  local body = 'return { name = "NAME", components = { ["' .. dup
    .. '"] = { image = "IMAGE", command = { "sleep", "1000" } } } }'
  local file_a, a = E.stack("ka", body)
  local file_b, b = E.stack("kb", body)
  local ha = E.mw({ "run", "--log-format", "json", file_a })
  local hb = E.mw({ "run", "--log-format", "json", file_b })
  wait_running(a, { dup })
  wait_running(b, { dup })

  for _, cmd in ipairs { "kill", "inspect", "logs" } do
    local code, out, errs = mw({ cmd, dup })
    t.eq(code, 1, cmd .. " of an ambiguous name")
    t.eq(out, "")
    t.eq(lines(errs), 1, errs)
    t.ok(errs:find(a, 1, true) and errs:find(b, 1, true), "names both stacks: " .. errs)
    t.match(errs, "%-%-stack")
  end

  local code, out, errs = mw({ "kill", "nosuch-" .. E.run_id })
  t.eq(code, 1)
  t.eq(out, "")
  t.match(errs, "^mw: no component nosuch")
  t.eq(lines(errs), 1, errs)
  code, out, errs = mw({ "kill", "nosuch", "--stack", a })
  t.eq(code, 1)
  t.eq(out, "")
  t.eq(errs, "mw: no component nosuch in stack " .. a .. "\n")

  local before_a, before_b = id_of(a, dup), id_of(b, dup)
  code, out, errs = mw({ "kill", dup, "--stack", a })
  t.eq(code, 0, errs)
  t.eq(out .. errs, "", "no output on success")
  t.ok(not e:inspect(before_a), "its container is gone")
  t.eq(id_of(b, dup), before_b, "the other stack's is untouched")
  -- the running mw recovers it
  t.wait_for(function()
    local id = id_of(a, dup)
    return id and id ~= before_a
  end, 30, "a new container")
  ha.stop()
  hb.stop()
end)

-- ---------------------------------------------------------------------------------------------

local LOGS = [==[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  talker = { image = "IMAGE",
    command = { "sh", "-c",
      [=[echo "out-$(cat /proc/sys/kernel/random/uuid)"; echo err-line >&2; exec sleep 1000]=] } },
  crasher = { image = "IMAGE",
    command = { "sh", "-c", [=[echo "boot-$(cat /proc/sys/kernel/random/uuid)"; sleep 0.5; exit 3]=] },
    restart = policy.on_failure { backoff = backoff.constant { delay = "300ms" } } },
} }
]==]

t.test("logs shows both streams with the prefix; -f follows components across restarts", function()
  local file, stack = E.stack("logs", LOGS)
  local h = E.mw({ "run", "--log-format", "json", file })
  wait_running(stack, { "talker" })
  t.wait_for(function()
    local _, out = mw({ "logs", "--stack", stack })
    return out:find("err-line", 1, true) and out:find("boot-", 1, true)
  end, 30, "the first lines of both")

  local code, out, errs = mw({ "logs", "--stack", stack })
  t.eq(code, 0, errs)
  t.match(out, "talker  | out%-%x+%-", "stdout, the prefix padded to the longest name")
  t.match(out, "talker  | err%-line\n", "stderr")
  t.match(out, "crasher | boot%-")
  code, out = mw({ "logs", "talker", "--stack", stack, "--tail", "1" })
  t.eq(code, 0)
  t.eq(lines(out), 1, out)
  code, out = mw({ "logs", "talker", file })
  t.eq(code, 0)
  t.match(out, "^talker | ")

  -- follow: a recreated talker (kill) and a crasher restarted in place
  local f = E.mw({ "logs", "-f", "talker", "crasher", "--stack", stack })
  t.wait_for(function() return f.text():find("talker  | out-", 1, true) end, 20, "the first talker line")
  local crashes = #distinct(f.text(), "boot%-[%x%-]+")
  local talker_id = id_of(stack, "talker")
  code = mw({ "kill", "talker", "--stack", stack })
  t.eq(code, 0)
  t.wait_for(function()
    local list = distinct(f.text(), "out%-[%x%-]+")
    return #list >= 2
  end, 30, "a line from the recreated talker; got:\n" .. f.text())
  t.ok(id_of(stack, "talker") ~= talker_id, "talker was recreated")
  -- stdout and stderr come as separate frames: the new talker's err-line may follow its out-line
  t.wait_for(function() return count(f.text(), "talker  | err%-line") >= 2 end, 30,
    "the recreated talker's stderr line; got:\n" .. f.text())
  t.wait_for(function() return #distinct(f.text(), "boot%-[%x%-]+") >= crashes + 2 end, 30,
    "lines from the restarted crasher")
  t.eq(f.stop("INT"), 0, "-f ends on SIGINT with 0")
  local text = f.text()
  local outs, dup1 = distinct(text, "out%-[%x%-]+")
  local boots, dup2 = distinct(text, "boot%-[%x%-]+")
  t.ok(not dup1 and not dup2, "no line twice:\n" .. text)
  t.eq(#outs, 2)
  t.eq(count(text, "talker  | err%-line"), 2, "stderr of both talkers")
  t.ok(#boots >= 2)
  h.stop()
end)

-- ---------------------------------------------------------------------------------------------

local STATUS = [==[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  ok = { image = "IMAGE", heartbeat = { interval = "200ms", grace = "10s" },
    command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
  slow = { image = "IMAGE", command = { "sh", "-c", "exit 3" },
    restart = policy.on_failure { backoff = backoff.constant { delay = "1h" } } },
  quit = { image = "IMAGE", command = { "sh", "-c", "exit 4" }, restart = function() return "give_up" end },
} }
]==]

local function by_name(st) return E.rows { stacks = { st } } end
local json_status = E.status

t.test("status --json: healthy, backing off, given up; without mw from the engine", function()
  local file, stack, dir = E.stack("stat", STATUS)
  local sdir = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", sdir, file })
  h.wait_event({ event = "healthy", component = "ok" }, 60)
  h.wait_event({ event = "failed", component = "slow" }, 30)
  h.wait_event({ event = "gave_up", component = "quit" }, 30)
  local st
  t.wait_for(function()
    local doc = json_status { "status", "--json", "--state-dir", sdir, "--stack", stack }
    st = doc.stacks[1]
    local c = by_name(st)
    return c.ok and c.ok.state == "healthy" and c.slow.state == "backoff" and c.quit.state == "gave_up"
  end, 10, "the live states")
  t.eq(st.stack, stack)
  t.eq(st.live, true)
  t.eq(st.pid, h.pid)
  local c = by_name(st)
  local now = core.time()
  t.eq(c.ok.source, "mw")
  t.eq(c.ok.container, id_of(stack, "ok"))
  t.eq(#c.ok.container, 64)
  t.eq(c.ok.heartbeat, "http")
  t.ok(type(c.ok.heartbeat_latency) == "number" and c.ok.heartbeat_latency >= 0, "latency")
  t.ok(type(c.ok.uptime) == "number" and c.ok.uptime >= 0 and c.ok.uptime < 120, "uptime")
  t.eq(c.ok.restarts, 0)
  t.eq(c.slow.source, "mw")
  t.ok(type(c.slow.retry_at) == "number" and c.slow.retry_at > now + 3000, "retries in an hour")
  t.eq(c.slow.last_failure.reason, "exited")
  t.eq(c.slow.last_failure.exit_code, 3)
  t.eq(c.slow.next_action, "restart")
  t.eq(c.quit.state, "gave_up")
  t.eq(c.quit.last_failure.exit_code, 4)

  local code, out, errs = mw({ "status", "--state-dir", sdir, file })
  t.eq(code, 0, errs)
  t.match(out, "supervised by mw %(pid " .. h.pid .. "%)")
  t.match(out, "\nCOMPONENT%s+STATE%s+CONTAINER%s+UPTIME%s+RESTARTS%s+LAST FAILURE%s+HEARTBEAT%s+NETWORK\n")
  -- ok runs in its network holder
  t.eq(c.ok.network, "held")
  t.eq(c.ok.holder.name, stack .. "-ok.net")
  t.eq(c.ok.holder.state, "running")
  t.match(out, "\nok%s[^\n]*%sheld\n")
  -- a second snapshot: one probe late under load shows ok unhealthy for a moment
  t.match(out, "\nok%s+u?n?healthy%s+%x%x%x%x%x%x%x%x%x%x%x%x%s")
  t.match(out, "\nslow%s+backing off until %d%d:%d%d:%d%d%s")
  t.match(out, "exited 3, %d+s ago")
  t.match(out, "\nquit%s+gave up%s")
  -- the header's columns line up with the rows
  local header = out:match("\n(COMPONENT[^\n]*)")
  local row = out:match("\n(ok [^\n]*)")
  t.eq((row:find("u?n?healthy")), header:find("STATE", 1, true))

  -- every stack: this one is among them
  local all = json_status { "status", "--json", "--state-dir", sdir }
  local found
  for _, s in ipairs(all.stacks) do if s.stack == stack then found = s end end
  t.ok(found and found.live, "listed with no stack given")

  -- no mw: the engine's view
  t.eq(h.stop(), 0)
  st = json_status({ "status", "--json", "--state-dir", sdir, "--stack", stack }).stacks[1]
  t.eq(st.live, false)
  c = by_name(st)
  t.eq(c.ok.source, "engine")
  t.eq(c.ok.state, "running")
  t.eq(c.slow.state, "exited")
  t.eq(c.slow.exit_code, 3)
  t.eq(c.quit.exit_code, 4)
  t.eq(c.ok.network, "held", "the engine's view: ok's NetworkMode joins its holder")
  t.eq(c.ok.holder.name, stack .. "-ok.net")
  t.eq(c.ok.holder.state, "running")
  code, out = mw({ "status", "--stack", stack, "--state-dir", sdir })
  t.eq(code, 0)
  t.match(out, "no mw running")
  t.match(out, "\nok%s[^\n]*%sheld\n")
  t.match(out, "\nslow%s+exited %(code 3%)")
  -- a stack file with a component the engine has no container for
  local file2 = dir .. "/more.lua"
  assert(fs.write_atomic(file2, string.format(
    'return { name = %q, components = { ok = { image = %q }, ghost = { image = %q } } }', stack, E.image(), E.image())))
  code, out = mw({ "status", file2, "--state-dir", sdir })
  t.eq(code, 0)
  t.match(out, "\nghost%s+not created")
  code, out, errs = mw({ "status", "--stack", "nosuch-" .. E.run_id })
  t.eq(code, 1)
  t.eq(out, "")
  t.eq(lines(errs), 1)
end)

-- ---------------------------------------------------------------------------------------------

-- `mw kill` removes the container by force: the engine kills it (a die event, code 137) before
-- it removes it (destroy). That is one failure, `removed`, recreated at once: not an exit to
-- restart in place, whose start then fails with "marked for removal".
t.test("kill with mw running: one failure 'removed', no start_failed or error line, one restart", function()
  local file, stack = E.stack("killrun", [==[
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { port = 8089, path = "/debug/vars", interval = "1s", misses = 3, grace = "10s" },
    command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
} }
]==])
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local before = id_of(stack, "web")
  local mark = h.mark()
  local code, _, errs = mw({ "kill", "web", "--stack", stack })
  t.eq(code, 0, errs)
  local _, at = h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  local after = id_of(stack, "web")
  t.ok(after and after ~= before, "a new container")
  local failed, bad = {}, {}
  for _, ev in ipairs(h.events_in(mark, at)) do
    if ev.event == "failed" then failed[#failed + 1] = ev end
    if ev.event == "start_failed" or ev.level == "error" then bad[#bad + 1] = ev.event .. ": " .. tostring(ev.msg) end
  end
  t.eq(#failed, 1, "one failure; log:\n" .. h.text())
  t.eq(failed[1] and failed[1].reason, "removed", "its reason")
  t.eq(failed[1] and failed[1].action, "recreate", "recreated, not restarted in place")
  t.same(bad, {}, "no start_failed, no error line")
  local st = json_status({ "status", "--json", "--stack", stack }).stacks[1]
  local web = by_name(st).web
  t.eq(web.restarts, 1, "counted once")
  t.eq(web.last_failure and web.last_failure.reason, "removed", "the last failure")
  h.stop()
end)

-- The other side of the rule above: a live container knocked off the stack network is still the
-- failure `disconnected`, reconnected in place (the disconnect event is checked against the
-- engine only to tell it from a dying container's).
t.test("a running container disconnected from the stack network: one failure 'disconnected', reconnected", function()
  local file, stack = E.stack("disc", [==[
return { name = "NAME", components = {
  web = { image = "IMAGE", command = { "sleep", "1000" } },
} }
]==])
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "started", component = "web" }, 60)
  local id = id_of(stack, "web")
  -- the endpoint is its network holder's (mw.holder)
  local ep = E.net_of(assert(e:inspect(id))).Id
  local mark = h.mark()
  assert(e:network_disconnect("mw-" .. stack, ep, true))
  local _, at = h.wait_event({ event = "reconnected", component = "web" }, 30, mark)
  local failed = {}
  for _, ev in ipairs(h.events_in(mark, at)) do
    if ev.event == "failed" then failed[#failed + 1] = ev.reason end
  end
  t.same(failed, { "disconnected" }, h.text())
  t.eq(id_of(stack, "web"), id, "the same container")
  t.ok(assert(e:inspect(ep)).NetworkSettings.Networks["mw-" .. stack], "on the network again")
  h.stop()
end)

t.test("scaled components: a row and a log prefix per instance; kill of one instance", function()
  local file, stack = E.stack("scale", [==[
return { name = "NAME", components = {
  web = { image = "IMAGE", scale = 2, command = { "sh", "-c", "echo hello from $(hostname); exec sleep 1000" } },
} }
]==])
  local h = E.mw({ "run", "--log-format", "json", file })
  local by = t.wait_for(function()
    local l = containers(stack).web
    if not l or #l ~= 2 then return nil end
    for _, x in ipairs(l) do if x.State ~= "running" then return nil end end
    return l
  end, 60, "two instances")
  local second
  for _, x in ipairs(by) do if x.Labels["mw.instance"] == "2" then second = x.Id end end
  t.ok(second, "instance 2 is labelled")

  local st = json_status({ "status", "--json", "--stack", stack }).stacks[1]
  local names = {}
  for i, c in ipairs(st.components) do names[i] = c.name end
  t.same(names, { "web", "web-2" })

  -- running is the process started, not its echo in the engine's log yet: wait for both lines
  local code, out
  t.wait_for(function()
    code, out = mw({ "logs", "web", "--stack", stack })
    local o = "\n" .. out
    return code == 0 and o:find("\nweb   | hello from ", 1, true) and o:find("\nweb-2 | hello from ", 1, true)
  end, 30, "both instances' hello lines in mw logs")
  code, out = mw({ "logs", "web-2", "--stack", stack })
  t.eq(code, 0)
  t.match(out, "^web%-2 | hello")
  t.eq(lines(out), 1)

  code = mw({ "kill", "web-2", "--stack", stack })
  t.eq(code, 0)
  t.ok(not e:inspect(second), "instance 2's container is gone")
  t.eq(#(containers(stack).web or {}) >= 1, true, "instance 1 is untouched")
  h.stop()
end)

os.exit(E.run(t))
