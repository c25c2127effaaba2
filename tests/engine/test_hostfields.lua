-- Issue 19: host and kernel fields reach the engine and behave as asked; logs are rotated by
-- default and capped on disk; a missing bind source is created; what only the engine can
-- refuse (a log driver it lacks) comes back with the engine's words.
local t = require "t"
local E = require "engine"
local fs = require "mw.fs"

local e = E.engine()
local running = E.running
local exec_until = E.exec_until

t.test("host fields: sysctls, dns, security_opt, group_add, oom_score_adj, devices, ipc, reservation", function()
  local file, stack = E.stack("hostf", [[
return { name = "NAME", components = {
  app = { image = "IMAGE", command = { "sleep", "3600" },
          sysctls = { ["net.core.somaxconn"] = 321 },
          dns = { "127.0.0.53" }, dns_search = { "corp.internal" }, dns_opt = { "ndots:3" },
          security_opt = { "no-new-privileges:true" }, group_add = { "4321" },
          oom_score_adj = 345, memory_reservation = "16m", ipc = "shareable",
          devices = { "/dev/null:/dev/mw-null:r" } },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local info = running(stack, "app")
  local hc = info.HostConfig
  t.same(hc.Sysctls, { ["net.core.somaxconn"] = "321" })
  -- DNS is the network namespace's: its network holder's (mw.holder)
  local nc = E.net_of(info).HostConfig
  t.same(nc.Dns, { "127.0.0.53" }); t.same(nc.DnsSearch, { "corp.internal" }); t.same(nc.DnsOptions, { "ndots:3" })
  t.same(hc.SecurityOpt, { "no-new-privileges:true" })
  t.same(hc.GroupAdd, { "4321" })
  t.eq(hc.OomScoreAdj, 345)
  t.eq(hc.MemoryReservation, 16 * 1024 * 1024)
  t.eq(hc.IpcMode, "shareable")
  t.eq(hc.Devices[1].PathInContainer, "/dev/mw-null")
  t.eq(hc.Devices[1].CgroupPermissions, "r")
  -- and the container lives by them
  exec_until(info.Id, { "cat", "/proc/sys/net/core/somaxconn" }, "^321", "somaxconn inside")
  -- on a user-defined network the engine's resolver (127.0.0.11) forwards to the dns servers
  local conf = exec_until(info.Id, { "cat", "/etc/resolv.conf" }, "corp%.internal", "resolv.conf search")
  t.match(conf, "ndots:3")
  exec_until(info.Id, { "cat", "/proc/1/oom_score_adj" }, "^345", "oom_score_adj of the main process")
  exec_until(info.Id, { "sh", "-c", "grep ^Groups: /proc/1/status" }, "4321", "the extra group")
  exec_until(info.Id, { "sh", "-c", "grep ^NoNewPrivs: /proc/1/status" }, "NoNewPrivs:%s+1", "no_new_privs")
  exec_until(info.Id, { "sh", "-c", "test -c /dev/mw-null && echo dev" }, "dev", "the device node")
  t.eq(h.stop(), 0)
end)

t.test("privileged: the engine gets the flag; the container runs with every capability or the engine says why not", function()
  -- On the test machine dockerd's bounding set lacks CAP_SYS_RESOURCE (a Firecracker VM), so
  -- runc refuses a privileged start ("unable to apply caps"): that refusal must come back to
  -- the policy with the engine's words; where it can run, it must hold every capability.
  local file, stack = E.stack("priv", [[
return { name = "NAME", components = {
  p = { image = "IMAGE", command = { "sleep", "3600" }, privileged = true,
        restart = function(f) if f.reason == "start_failed" then return "give_up" end return "restart", "1s" end },
  u = { image = "IMAGE", command = { "sleep", "3600" } },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local u = running(stack, "u")
  t.eq(u.HostConfig.Privileged, false)
  local p, gave
  t.wait_for(function()
    for _, ev in ipairs(h.events()) do
      if ev.event == "gave_up" and ev.component == "p" then gave = ev end
    end
    local list = E.containers(stack).p
    if list and list[1] then p = e:inspect(list[1].Id) end
    return gave or (p and p.State.Running)
  end, 90, "the privileged component running or refused")
  t.ok(p, "a container was created for p")
  t.eq(p.HostConfig.Privileged, true)
  if gave then
    print("# the engine refused the privileged start here: " .. tostring(gave.msg))
    t.eq(gave.reason, "start_failed")
    t.match(gave.msg, "cannot start")
  else
    local pcap = exec_until(p.Id, { "sh", "-c", "grep ^CapEff: /proc/1/status" }, "CapEff")
    local ucap = exec_until(u.Id, { "sh", "-c", "grep ^CapEff: /proc/1/status" }, "CapEff")
    t.ok(pcap ~= ucap, "privileged " .. pcap .. " vs " .. ucap)
  end
  t.eq(h.stop(), 0)
end)

-- Sum of the sizes of a container's json-file log and its rotated files.
local function log_bytes(info)
  local dir = info.LogPath:match("^(.*)/[^/]+$")
  local total, files = 0, 0
  for _, name in ipairs(assert(fs.list(dir))) do
    if name:find("%-json%.log") then
      local st = fs.stat(dir .. "/" .. name)
      if st then total = total + st.size; files = files + 1 end
    end
  end
  return total, files
end

t.test("logs: rotated by default (json-file, 10m x 3); a cap written in the stack file holds on disk", function()
  local file, stack = E.stack("logrot", [[
return { name = "NAME", components = {
  chatty = { image = "IMAGE", logging = { driver = "json-file", options = { ["max-size"] = "4k", ["max-file"] = "2" } },
             command = { "sh", "-c", "i=0; while [ $i -lt 3000 ]; do " ..
               "echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; echo done; sleep 3600" } },
  plain = { image = "IMAGE", command = { "sleep", "3600" } },
  own = { image = "IMAGE", command = { "sleep", "3600" }, logging = "engine" },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local chatty = running(stack, "chatty")
  local plain, own = running(stack, "plain"), running(stack, "own")
  t.eq(plain.HostConfig.LogConfig.Type, "json-file")
  t.same(plain.HostConfig.LogConfig.Config, { ["max-size"] = "10m", ["max-file"] = "3" })
  t.same(own.HostConfig.LogConfig.Config, {}, "'engine': the engine's default, no options from mw")
  t.same(chatty.HostConfig.LogConfig.Config, { ["max-size"] = "4k", ["max-file"] = "2" })
  -- ~200 kB written; on disk it stays within 2 files of 4 kB (each may pass the size by a line)
  t.wait_for(function()
    local r = io.open(chatty.LogPath)
    if not r then return false end
    local text = r:read("a"); r:close()
    return text:find('"done\\n"') ~= nil
  end, 60, "the chatty component's last line in its log")
  local bytes, files = log_bytes(chatty)
  print(string.format("# 3000 lines (~200 kB) written; on disk %d bytes in %d files", bytes, files))
  t.ok(files <= 2, "at most 2 log files, got " .. files)
  t.ok(bytes <= 2 * (4096 + 200), "log files capped, got " .. bytes .. " bytes")
  t.eq(h.stop(), 0)
end)

t.test("a missing bind source is created (one line); create_host_path = false refuses at check", function()
  local file, stack, dir = E.stack("mkbind", [[
return { name = "NAME", components = {
  app = { image = "IMAGE", volumes = { "./made/deeper:/data" },
          command = { "sh", "-c", "echo hello > /data/from-container; sleep 3600" } },
} }
]])
  t.eq(fs.stat(dir .. "/made"), nil)
  local h = E.mw({ "run", "--log-format", "json", file })
  local ev = h.wait_event({ event = "volume", component = "app" }, 60)
  t.match(ev.msg, "created bind mount source .*/made/deeper")
  running(stack, "app")
  t.wait_for(function() return fs.read(dir .. "/made/deeper/from-container") == "hello\n" end, 30,
    "the container's file in the created directory")
  t.eq(h.stop(), 0)
  local refused = E.stack("nobind", [[
return { name = "NAME", components = {
  app = { image = "IMAGE", volumes = { { source = "./absent", target = "/data", create_host_path = false } } },
} }
]])
  local code, out = E.mw_sync({ "check", refused })
  t.eq(code, 2, out)
  t.match(out, "create_host_path = false")
end)

t.test("a log driver the engine lacks: the engine's message, as start_failed", function()
  local file, stack = E.stack("nodriver", [[
return { name = "NAME", components = {
  app = { image = "IMAGE", command = { "sleep", "3600" }, logging = { driver = "mw-no-such-driver" },
          restart = function(f) if f.reason == "start_failed" then return "give_up" end return "restart", "1s" end },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local g = h.wait_event({ event = "gave_up", component = "app" }, 60)
  t.eq(g.reason, "start_failed")
  t.match(g.msg, "mw%-no%-such%-driver")
  h.stop()
  local by = E.containers(stack)
  t.ok(not by.app or by.app[1].State ~= "running", "nothing runs")
end)

-- A port nothing listens on now on the host's loopback (the kernel's pick, released at once).
local function free_port()
  local net = require "mw.net"
  local srv = assert(net.listen("127.0.0.1", 0))
  local port = srv:port()
  srv:close()
  return port
end

t.test("network_mode host: nothing published, the heartbeat reaches the service on the host's loopback", function()
  local port = free_port()
  local file, stack = E.stack("hostnet", ([[
return { name = "NAME", components = {
  tool = { image = "IMAGE", network_mode = "host",
           command = { "sh", "-c", "mkdir -p /w/debug && echo ok > /w/debug/vars && exec httpd -f -p 127.0.0.1:PORT -h /w" },
           heartbeat = { port = PORT, interval = "200ms", timeout = "1s", misses = 3, grace = "20s" } },
} }
]]):gsub("PORT", tostring(port)))
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "tool" }, 90)
  local info = running(stack, "tool")
  t.eq(info.HostConfig.NetworkMode, "host")
  t.eq(next(info.HostConfig.PortBindings or {}), nil, "nothing published")
  -- the host itself reaches it on its own loopback
  local p = io.popen("curl -s http://127.0.0.1:" .. port .. "/debug/vars")
  t.eq(p:read("a"), "ok\n"); p:close()
  -- killed: restarted, and healthy again through the same path
  local n = #h.events()
  assert(e:kill(info.Id, "KILL"))
  h.wait_event({ event = "healthy", component = "tool" }, 60, n)
  t.eq(h.stop(), 0)
end)

t.test("network_mode service:x: two components share one namespace; a restart of x takes the other along", function()
  -- x without a network holder: the sharers join x's own container, and follow its restarts
  local file, stack = E.stack("sharens", [[
return { name = "NAME", components = {
  db = { image = "IMAGE", hold_network = false,
         command = { "sh", "-c", "mkdir -p /w/debug && echo db > /w/debug/vars && exec httpd -f -p 127.0.0.1:8089 -h /w" } },
  app = { image = "IMAGE", network_mode = "service:db", command = { "sleep", "3600" },
          heartbeat = { exec = { "wget", "-q", "-O", "-", "http://127.0.0.1:8089/debug/vars" },
                        interval = "300ms", timeout = "2s", misses = 3, grace = "20s" } },
  side = { image = "IMAGE", network_mode = "service:db", command = { "sleep", "3600" } },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  -- app is healthy only if it reaches db's loopback-only server: one namespace
  h.wait_event({ event = "healthy", component = "app" }, 90)
  local by = E.wait_running(stack, { "db", "app", "side" }, 30)
  local app = assert(e:inspect(by.app[1].Id))
  -- the engine keeps what it was given (the container's name) or, seen on 20.10 too, its id
  local mode = app.HostConfig.NetworkMode
  t.ok(mode == "container:" .. by.db[1].Id or mode == "container:" .. stack .. "-db", "NetworkMode " .. tostring(mode))
  local n = #h.events()
  assert(e:kill(by.db[1].Id, "KILL"))
  -- whichever comes first (app's own heartbeat failing, or db's restart taking it along), app
  -- ends up started after db, in db's new namespace, and healthy there
  local _, at = h.wait_event({ event = "restarted", component = "db" }, 60, n)
  h.wait_event({ event = "healthy", component = "app" }, 60, at)
  local db2 = assert(e:inspect(by.db[1].Id))
  local app2 = assert(e:inspect(by.app[1].Id))
  t.ok(app2.State.StartedAt >= db2.State.StartedAt, "app started after db: " .. app2.State.StartedAt ..
    " vs " .. db2.State.StartedAt)
  -- side has no heartbeat to notice: mw restarts it into db's new namespace
  local ev = h.wait_event({ event = "restarting", component = "side" }, 60, n)
  t.match(ev.msg, "network namespace of db")
  h.wait_event({ event = "restarted", component = "side" }, 60, n)
  t.eq(h.stop(), 0)
end)

t.test("network_mode service:x with x held: the sharers join x's network holder and stay when x restarts", function()
  local file, stack = E.stack("sharehold", [[
return { name = "NAME", components = {
  db = { image = "IMAGE", command = { "sh", "-c", "mkdir -p /w/debug && echo db > /w/debug/vars && exec httpd -f -p 127.0.0.1:8089 -h /w" } },
  app = { image = "IMAGE", network_mode = "service:db", command = { "sleep", "3600" },
          heartbeat = { exec = { "wget", "-q", "-O", "-", "http://127.0.0.1:8089/debug/vars" },
                        interval = "300ms", timeout = "2s", misses = 5, grace = "20s" } },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "app" }, 90)
  local by = E.wait_running(stack, { "db", "app" }, 30)
  local app = assert(e:inspect(by.app[1].Id))
  local db = assert(e:inspect(by.db[1].Id))
  local holder = E.net_of(db)
  t.ok(holder.Id ~= db.Id, "db joins a network holder")
  local mode = app.HostConfig.NetworkMode
  t.ok(mode == "container:" .. holder.Id or mode == "container:" .. stack .. "-db.net", "NetworkMode " .. tostring(mode))
  local n = #h.events()
  assert(e:kill(db.Id, "KILL"))
  h.wait_event({ event = "restarted", component = "db" }, 60, n)
  -- app still reaches db's loopback-only server: the namespace outlived db's process
  E.exec_until(app.Id, { "wget", "-q", "-O", "-", "http://127.0.0.1:8089/debug/vars" }, "db", "db again from app")
  local app2 = assert(e:inspect(app.Id))
  t.eq(app2.State.StartedAt, app.State.StartedAt, "app was not restarted")
  for i = n + 1, #h.events() do
    local ev = h.events()[i]
    if ev.component == "app" then t.ok(ev.event ~= "restarting", "app was " .. ev.event) end
  end
  t.eq(h.stop(), 0)
end)

os.exit(E.run(t))
