-- The network holder (mw.holder, issue 17 §1): a held component's container joins the
-- namespace of a holder container of its own, which outlives the container's restarts: the
-- address, the published port and the holder itself stay; a holder removed by hand is the
-- component's failure and a new one is made; a new mw adopts both; destroy removes it.
local t = require "t"
local core = require "mw.core"
local http = require "mw.http"
local E = require "engine"

local e = E.engine()

local STACK = [==[
return { name = "NAME", components = {
  web = { image = "IMAGE", ports = { "8089" }, heartbeat = { port = 8089, interval = "300ms", misses = 3 },
          command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" } },
  plain = { image = "IMAGE", command = { "sleep", "1000000" }, hold_network = false },
  side = { image = "IMAGE", command = { "sleep", "1000000" }, network_mode = "service:web" },
} }
]==]

local function stack(short) return E.stack(short, STACK) end

-- The component's one running container, inspected, and its holder, inspected.
local function pair(name)
  local info = E.running(name, "web")
  return info, E.net_of(info)
end

local function address(info, net)
  local ep = info.NetworkSettings.Networks[net]
  return ep and ep.IPAddress
end

local function host_port(holder)
  local b = (holder.NetworkSettings.Ports or {})["8089/tcp"]
  return b and b[1] and tonumber(b[1].HostPort)
end

local function answers(port)
  t.wait_for(function()
    local res = http.request { url = "http://127.0.0.1:" .. port .. "/debug/vars", timeout = 2 }
    return res and res.status == 200
  end, 30, "web answers on 127.0.0.1:" .. port)
end

t.test("a held component restarts in its holder: same address and port, the holder untouched; mw kill keeps it too", function()
  local file, name = stack("hold")
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local info, holder = pair(name)
  t.ok(holder.Id ~= info.Id, "web joins another container's namespace")
  t.eq(holder.Name, "/" .. name .. "-web.net", "the holder's name")
  t.eq(holder.Config.Labels["mw.holder"], "web", "labelled with its instance")
  t.eq(holder.Config.Labels["used-by"], "millwright")
  t.eq(info.HostConfig.NetworkMode, "container:" .. holder.Id, "joined by id")
  local net = "mw-" .. name
  local ip, port = address(holder, net), host_port(holder)
  t.ok(ip and port, "the holder has the address and the published port")
  answers(port)
  -- hold_network = false: a namespace of its own, as compose makes
  local plain = E.running(name, "plain")
  t.eq(E.net_of(plain).Id, plain.Id, "plain has no holder")
  t.ok(address(plain, net), "plain is on the stack's network itself")

  local mark = h.mark()
  assert(core.kill(info.State.Pid, "KILL"))
  h.wait_event({ event = "restarted", component = "web" }, 60, mark)
  answers(port)
  local info2, holder2 = pair(name)
  t.eq(info2.Id, info.Id, "restarted in place")
  t.eq(holder2.Id, holder.Id, "the same holder")
  t.eq(holder2.State.StartedAt, holder.State.StartedAt, "which was not restarted")
  t.eq(address(holder2, net), ip, "the same address")
  for _, ev in ipairs(h.events_in(mark, #h.events())) do
    t.ok(not (ev.component == "side" and ev.event == "restarting"), "side (sharing web's) stays: " .. tostring(ev.msg))
  end

  mark = h.mark()
  local code, out = E.mw_sync { "kill", "--stack", name, "web" }
  t.eq(code, 0, out)
  h.wait_event({ event = "recreated", component = "web" }, 60, mark)
  local info3, holder3 = pair(name)
  t.ok(info3.Id ~= info.Id, "mw kill: a new container")
  t.eq(holder3.Id, holder.Id, "in the same holder")
  answers(port)
  t.eq(h.stop(), 0)

  -- a new mw adopts the container and its holder: nothing restarted
  local h2 = E.mw({ "run", "--log-format", "json", file })
  h2.wait_event({ event = "adopted", component = "web" }, 60)
  local info4, holder4 = pair(name)
  t.eq(info4.Id, info3.Id, "the container adopted")
  t.eq(holder4.Id, holder.Id, "the holder adopted")
  t.eq(info4.State.StartedAt, info3.State.StartedAt, "not restarted")
  t.eq(h2.stop(), 0)

  -- the holder restarted by hand while no mw runs: a new namespace, the container left in the
  -- old one is not adopted but made again
  t.eq(assert(e:inspect(holder.Id)).State.Status, "running")
  assert(e:kill(holder.Id, "KILL"))
  assert(e:start(holder.Id))
  local h3 = E.mw({ "run", "--log-format", "json", file })
  h3.wait_event({ event = "healthy", component = "web" }, 60)
  local info5, holder5 = pair(name)
  t.ok(info5.Id ~= info3.Id, "the cut-off container made again")
  t.eq(holder5.Id, holder.Id, "in the holder, started again")
  answers(host_port(holder5))
  t.eq(h3.stop(), 0)

  code, out = E.mw_sync { "destroy", file }
  t.eq(code, 0, out)
  t.match(out, "removed network holder " .. name:gsub("%p", "%%%0") .. "%-web%.net\n")
  t.ok(not e:inspect(holder.Id), "the holder is gone")
end)

t.test("a holder removed by hand: the component fails (disconnected) and comes back in a new one", function()
  local file, name = stack("holdrm")
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  local _, holder = pair(name)
  local mark = h.mark()
  assert(e:remove(holder.Id, { force = true }))
  local f = h.wait_event({ event = "failed", component = "web" }, 30, mark)
  t.eq(f.reason, "disconnected", "the failure's reason")
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  local info2, holder2 = pair(name)
  t.ok(holder2.Id ~= holder.Id, "a new holder")
  t.eq(info2.HostConfig.NetworkMode, "container:" .. holder2.Id, "joined")
  answers(host_port(holder2))
  -- side shares web's namespace: it follows web into the new holder
  h.wait_event({ event = "restarted", component = "side" }, 60, mark)
  t.eq(h.stop(), 0)
end)

t.test("mw stop stops the holder once nothing shares it (its port released); mw start starts it first", function()
  local file, name = stack("holdstop")
  local sdir = E.tmpdir()
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", sdir, file })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  h.wait_event({ event = "started", component = "side" }, 60)
  local info, holder = pair(name)
  local port = host_port(holder)
  -- side shares web's namespace: stopping web alone keeps the holder (and side's network)
  local code, out = E.mw_sync { "stop", "--state-dir", sdir, file, "web" }
  t.eq(code, 0, out)
  t.eq(assert(e:inspect(info.Id)).State.Status, "exited", "web stopped")
  t.eq(assert(e:inspect(holder.Id)).State.Status, "running", "its holder kept: side shares it")
  code, out = E.mw_sync { "stop", "--state-dir", sdir, file, "side" }
  t.eq(code, 0, out)
  t.wait_for(function() return assert(e:inspect(holder.Id)).State.Status == "exited" end, 30,
    "the holder stopped once side stopped too")
  t.ok(not http.request { url = "http://127.0.0.1:" .. port .. "/debug/vars", timeout = 1 }, "its port released")
  local mark = h.mark()
  code, out = E.mw_sync { "start", "--state-dir", sdir, file, "web", "side" }
  t.eq(code, 0, out)
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  local info2, holder2 = pair(name)
  t.eq(holder2.Id, holder.Id, "the same holder, started again")
  t.eq(info2.Id, info.Id, "the same container")
  for _, ev in ipairs(h.events_in(mark, #h.events())) do
    t.ok(ev.event ~= "failed", "the holder's stop was no failure: " .. tostring(ev.msg))
  end
  answers(host_port(holder2))
  t.eq(h.stop(), 0)
end)

os.exit(E.run(t))
