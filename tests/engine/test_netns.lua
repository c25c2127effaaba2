-- Heartbeats through the container's own network namespace (the netns path) and through a
-- published port (the fallback): each carries a component's heartbeat, finds a killed or hung
-- service, and shows in `mw status`; on the netns path no port is published for a heartbeat
-- alone, so the engine starts no docker-proxy for it.
local t = require "t"
local fs = require "mw.fs"
local net = require "mw.net"
local E = require "engine"
local run = require "run"

local e = E.engine()
local CAN_SETNS = net.can_setns()
local SETPRIV = "/usr/bin/setpriv"

-- a case that needs a condition: skipped, with why, when it does not hold
local function test_if(cond, why, name, fn)
  if cond then t.test(name, fn) else t.skip(name, why) end
end

-- web: busybox httpd as a daemon (the main process is a shell that sleeps), so killing the
-- service leaves the container running and only heartbeats can tell. BIND is where it listens.
local STACK = [[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  web = { image = "IMAGE", heartbeat = { interval = "300ms", timeout = "1s", misses = 3, grace = "20s" },
          command = { "sh", "-c", "mkdir -p /w/debug && echo '{\"ok\":1}' > /w/debug/vars && httpd -p BIND -h /w && exec sleep 1000000" },
          restart = policy.on_failure { backoff = backoff.constant { delay = "100ms" } } },
} }
]]

local function stack(short, bind)
  return E.stack(short, (STACK:gsub("BIND", bind)))
end

-- The docker-proxy processes on this host that forward to container_ip:port.
local function proxies_for(ip, port)
  local found = {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    if name:match("^%d+$") then
      local cmd = fs.read("/proc/" .. name .. "/cmdline")
      if cmd and cmd:find("docker-proxy", 1, true) then
        local args = cmd:gsub("\0", " ") .. " "
        if args:find("-container-ip " .. ip .. " ", 1, true) and args:find("-container-port " .. port .. " ", 1, true) then
          found[#found + 1] = tonumber(name)
        end
      end
    end
  end
  return found
end

local function container_ip(info)
  for _, n in pairs(info.NetworkSettings and info.NetworkSettings.Networks or {}) do
    if n.IPAddress and n.IPAddress ~= "" then return n.IPAddress end
  end
end

-- `mw status` of the stack -> its output (exit 0 asserted)
local function status(stack_name, dir)
  local code, out = E.mw_sync { "status", "--state-dir", dir .. "/state", "--stack", stack_name }
  t.eq(code, 0, "mw status: " .. out)
  return out
end

-- Waits until mw status shows web healthy with its heartbeat's path -> the output.
local function status_shows(stack_name, dir, via)
  local out
  t.wait_for(function()
    out = status(stack_name, dir)
    -- the HEARTBEAT cell ends with the path; the NETWORK column follows it
    return out:match("\nweb%s+healthy[^\n]* " .. via .. "%s+%S[^\n]*\n") ~= nil
  end, 30, "mw status shows web healthy via " .. via)
  return out
end

-- Kills the service (not the main process) inside the container; the heartbeat must find it.
local function kill_service(h, id)
  local mark = #h.events()
  local code, out = e:exec(id, { "killall", "-9", "httpd" })
  t.eq(code, 0, "killall httpd: " .. tostring(out))
  local ev = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(ev.reason, "heartbeat", "the killed service is found by heartbeats")
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
end

test_if(CAN_SETNS, "mw may not enter network namespaces here",
  "netns path: a service on the container's own loopback only is watched, with no port published", function()
  local file, name, dir = stack("ns", "127.0.0.1:8089")
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local id = E.wait_running(name, { "web" }).web[1].Id
  local info = E.net_of(assert(e:inspect(id)))     -- its network holder's ports and address
  local bindings = info.HostConfig and info.HostConfig.PortBindings
  t.ok(type(bindings) ~= "table" or bindings["8089/tcp"] == nil, "no binding asked for the heartbeat port")
  local ports = info.NetworkSettings and info.NetworkSettings.Ports
  t.ok(type(ports) ~= "table" or type(ports["8089/tcp"]) ~= "table", "the heartbeat port is not published")
  local ip = container_ip(info)
  t.ok(ip, "the container has an address on its network")
  t.eq(#proxies_for(ip, 8089), 0, "no docker-proxy for the heartbeat port")
  for _, ev in ipairs(h.events()) do
    t.ok(ev.event ~= "heartbeat_via", "no fallback line on the netns path: " .. tostring(ev.msg))
  end
  local out = status_shows(name, dir, "netns")
  print("#   " .. out:gsub("\n", "\n#   "))
  -- mw inspect takes the same path: the endpoint answers though nothing is published
  local code, body = E.mw_sync { "inspect", "--state-dir", dir .. "/state", "--stack", name, "web" }
  t.eq(code, 0, "mw inspect: " .. body)
  t.match(body, '{"ok":1}', "the endpoint's answer, through the namespace")

  -- the service killed (the main process lives on): only the heartbeat can tell
  kill_service(h, id)
  -- a hang: the frozen container answers nothing
  id = E.wait_running(name, { "web" }).web[1].Id
  local mark = #h.events()
  assert(e:pause(id))
  local ev = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(ev.reason, "heartbeat", "the hang is found by heartbeats")
  -- recovered: a new process, a new namespace opened, healthy again through it
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  status_shows(name, dir, "netns")
  h.stop()
end)

test_if(CAN_SETNS, "mw may not enter network namespaces here",
  "a server that keeps connections keeps the heartbeat's: many beats on one connection, a restart makes a new one", function()
  local file, name, dir = E.stack("keep", ([[
local policy = require "mw.policy"
local backoff = require "mw.backoff"
return { name = "NAME", components = {
  ka = { image = "KAIMAGE", command = { "/bin/kahttpd", "8089" },
         -- a probe that times out is not kept: 3 s leaves room for a loaded machine
         heartbeat = { interval = "100ms", timeout = "3s", misses = 30, grace = "20s" },
         restart = policy.always { backoff = backoff.constant { delay = 0 } } },
} }
]]):gsub("KAIMAGE", E.kahttpd_image()))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  h.wait_event({ event = "healthy", component = "ka" }, 60)
  -- kahttpd counts the connections it accepted and the requests it answered; each mw inspect
  -- is a connection (and a request) of its own
  local asked = 0
  local function counts()
    asked = asked + 1
    local code, body = E.mw_sync { "inspect", "--state-dir", dir .. "/state", "--stack", name, "ka" }
    t.eq(code, 0, "mw inspect: " .. body)
    return tonumber(body:match('"accepts":(%d+)')), tonumber(body:match('"requests":(%d+)'))
  end
  local a0, r0 = counts()
  t.ok(a0 and r0, "kahttpd's counts")
  asked = 0
  -- at least 10 heartbeats later (requests besides ours), no connection besides ours
  local a1 = t.wait_for(function()
    local a, r = counts()
    if r - r0 - asked >= 10 then return a end
  end, 30, "ten heartbeats")
  t.eq(a1 - a0, asked, "the heartbeats made no new connection: one kept connection carried them")
  -- a restart is a new process: the kept connection goes with the old one, and beats go on
  local mark = #h.events()
  local id = E.wait_running(name, { "ka" }).ka[1].Id
  assert(e:kill(id, "KILL"))
  h.wait_event({ event = "healthy", component = "ka" }, 60, mark)
  local b0, s0 = counts()
  asked = 0
  local b1 = t.wait_for(function()
    local a, r = counts()
    if r - s0 - asked >= 10 then return a end
  end, 30, "ten heartbeats after the restart")
  t.eq(b1 - b0, asked, "after the restart, one kept connection again")
  h.stop()
end)

t.test("fallback, MW_HEARTBEAT_PATH=published: the published port carries the heartbeat; one line says so", function()
  local file, name, dir = stack("pub", "8089")
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
    { env = { "MW_HEARTBEAT_PATH=published" } })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local id = E.wait_running(name, { "web" }).web[1].Id
  local info = E.net_of(assert(e:inspect(id)))     -- its network holder's ports and address
  local ports = info.NetworkSettings and info.NetworkSettings.Ports
  local b = type(ports) == "table" and ports["8089/tcp"]
  t.ok(type(b) == "table" and b[1] and b[1].HostIp == "127.0.0.1", "the heartbeat port is published on 127.0.0.1")
  local ip = container_ip(info)
  print(string.format("#   docker-proxy processes for the heartbeat port: %d (0 when the engine runs without its userland proxy)",
    #proxies_for(ip, 8089)))
  local lines = 0
  for _, ev in ipairs(h.events()) do
    if ev.event == "heartbeat_via" then
      lines = lines + 1
      t.match(ev.msg, "MW_HEARTBEAT_PATH=published")
    end
  end
  t.eq(lines, 1, "one line says heartbeats take the published ports")
  status_shows(name, dir, "published")
  local code, body = E.mw_sync { "inspect", "--state-dir", dir .. "/state", "--stack", name, "web" }
  t.eq(code, 0, "mw inspect: " .. body)
  t.match(body, '{"ok":1}')
  kill_service(h, id)
  status_shows(name, dir, "published")
  h.stop()
end)

test_if(CAN_SETNS and fs.stat(SETPRIV), "needs CAP_SYS_ADMIN to drop and setpriv(1)",
  "fallback without CAP_SYS_ADMIN: setns is refused, the published port carries the heartbeat", function()
  local file, name, dir = stack("cap", "8089")
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
    { wrap = { SETPRIV, "--bounding-set", "-sys_admin", "--" } })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local ev = h.wait_event({ event = "heartbeat_via" }, 5)
  t.match(ev.msg, "may not enter network namespaces", "the one line says why")
  t.match(ev.msg, "not permitted", "the kernel's refusal (EPERM)")
  status_shows(name, dir, "published")
  h.stop()
end)

-- The host's neighbour entry for a container's address, on the bridge of its network ->
-- "lladdr state" text | nil (iproute2's `ip neigh show`).
local function ip_cmd(...)
  local code, out = run.program({ "ip", ... }, { inherit = { "PATH" }, merge = true })
  return code, out
end
local function neighbour(ip, dev)
  local code, out = ip_cmd("neigh", "show", ip, "dev", dev)
  if code ~= 0 then return nil end
  return out:match("lladdr (%S+)")
end

-- A restart announces the container's address from inside its namespace (Sup:announce). The
-- host's entry for it is set to a wrong hardware address first (00:00:5e:00:53:01, RFC 7042's
-- documentation range): only an announcement from the restarted container puts it right, as
-- the host sends it nothing. A second component keeps the bridge up (a bridge that loses its
-- last port drops its entries). The address is static so the restart keeps it. Without a
-- network holder: a held container's restart keeps its interfaces, nothing to announce.
test_if(CAN_SETNS, "mw may not enter network namespaces here",
  "a restarted container announces its address: the host's stale neighbour entry is put right", function()
  local octet = require("mw.core").pid() % 250 + 3
  local file, name, dir = E.stack("arp", string.format([[
return { name = "NAME", networks = { lan = { subnet = "10.251.%d.0/24" } }, components = {
  web = { image = "IMAGE", command = { "sh", "-c", "exec httpd -f -p 127.0.0.1:8089 -h /" }, hold_network = false,
          networks = { lan = { ipv4_address = "10.251.%d.10" } } },
  peer = { image = "IMAGE", command = { "sleep", "1000000" }, networks = { "lan" } },
} }
]], octet, octet))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file })
  local id = E.wait_running(name, { "web", "peer" }).web[1].Id
  local info = assert(e:inspect(id))
  local ip, mac, dev
  for _, n in pairs(info.NetworkSettings.Networks) do
    if n.IPAddress == string.format("10.251.%d.10", octet) then
      ip, mac, dev = n.IPAddress, n.MacAddress, "br-" .. n.NetworkID:sub(1, 12)
    end
  end
  t.ok(ip and mac ~= "" and dev, "web has its static address on the stack's network")
  local wrong = "00:00:5e:00:53:01"
  local code, out = ip_cmd("neigh", "replace", ip, "lladdr", wrong, "dev", dev, "nud", "stale")
  t.eq(code, 0, "ip neigh replace: " .. out)
  t.eq(neighbour(ip, dev), wrong, "the host's entry holds the wrong address before the restart")
  local mark = #h.events()
  assert(require("mw.core").kill(info.State.Pid, "KILL"))
  h.wait_event({ event = "restarted", component = "web" }, 60, mark)
  t.wait_for(function() return neighbour(ip, dev) == mac end, 10, "the host's entry names web's hardware address")
  ip_cmd("neigh", "del", ip, "dev", dev)
  h.stop()
end)

os.exit(E.run(t))
