-- Issue 19: the stack's networks against the real engine: a static address on a declared
-- subnet, an alias another component resolves, an external network and an external volume
-- joined and mounted but never created, labelled or removed (mw destroy leaves them), and a
-- missing external one failing the start in one line. Container to container traffic stays on
-- the engine's network; the host sends nothing to a private address.
local t = require "t"
local E = require "engine"
local core = require "mw.core"

local e = E.engine()
local running = E.running
local function exec_until(id, cmd, pat, what) return E.exec_until(id, cmd, pat, what, { plain = true }) end

-- A /24 inside 10.250.0.0/16 picked from this run, so runs side by side rarely collide.
local octet = core.pid() % 250 + 3
local SUBNET = string.format("10.250.%d.0/24", octet)
local ADDR = string.format("10.250.%d.10", octet)
local GATEWAY = string.format("10.250.%d.254", octet)

-- The foreign objects the test makes itself: labelled mw.test=<run> for this file's own
-- cleanup, but without used-by=millwright, so mw must treat them as someone else's.
local FOREIGN = { ["mw.test"] = E.run_id }
local ext_net = "ext-" .. E.run_id
local ext_vol = "extvol-" .. E.run_id
t.after(function()
  for _, n in ipairs(e:network_list { label = { "mw.test=" .. E.run_id } } or {}) do
    if n.Name == ext_net then e:network_remove(n.Id) end
  end
  e:volume_remove(ext_vol, true)
end)

t.test("static address, alias, external network and volume; down and destroy leave the external ones", function()
  assert(e:network_create(ext_net, FOREIGN))
  assert(e:volume_create(ext_vol, FOREIGN))
  local file, stack = E.stack("nets", [[
return { name = "NAME",
  networks = { back = { subnet = "]] .. SUBNET .. [[", gateway = "]] .. GATEWAY .. [[" },
               corp = { external = true, name = "]] .. ext_net .. [[" }, inside = { internal = true } },
  components = {
    api = { image = "IMAGE", command = { "sh", "-c", "echo hello > /data/mark; exec sleep 3600" },
            networks = { "corp", back = { ipv4_address = "]] .. ADDR .. [[", aliases = { "api-alias" } } },
            volumes = { { source = "]] .. ext_vol .. [[", target = "/data", external = true } } },
    client = { image = "IMAGE", command = { "sleep", "3600" }, networks = { "back", "inside" } },
} }
]])
  local code, out = E.mw_sync({ "check", file })
  t.eq(code, 0, out)
  t.match(out, "back %(" .. ADDR:gsub("%.", "%%.") .. ", aliases api%-alias%)")
  t.match(out, "external " .. ext_net:gsub("%-", "%%-"))
  local h = E.mw({ "run", "--log-format", "json", file })
  local api = running(stack, "api")
  local back = "mw-" .. stack .. "-back"
  -- its network holder (mw.holder) has the endpoints; api runs in its namespace
  local api_net = E.net_of(api)
  t.ok(api_net.Id ~= api.Id, "api joins its network holder")
  local ep = api_net.NetworkSettings.Networks[back]
  t.ok(ep, "api is on " .. back)
  t.eq(ep.IPAddress, ADDR)
  t.eq(ep.IPAMConfig and ep.IPAMConfig.IPv4Address, ADDR)
  t.ok(api_net.NetworkSettings.Networks[ext_net], "api joined the external network")
  local net = assert(e:network_inspect(back))
  t.eq(net.IPAM.Config[1].Subnet, SUBNET)
  t.eq(net.IPAM.Config[1].Gateway, GATEWAY)
  t.eq(net.Labels["used-by"], "millwright", "mw's own network carries its label")
  t.eq(assert(e:network_inspect("mw-" .. stack .. "-inside")).Internal, true)
  local mounted
  for _, m in ipairs(api.Mounts) do if m.Destination == "/data" then mounted = m.Name end end
  t.eq(mounted, ext_vol, "the external volume is mounted by its own name")
  -- the alias resolves to the static address from another component, on the stack's network
  local client = running(stack, "client")
  exec_until(client.Id, { "ping", "-c1", "-W2", "api-alias" }, ADDR, "api-alias resolving from client")
  exec_until(api.Id, { "cat", "/data/mark" }, "hello", "the external volume written")
  t.eq(h.stop(), 0)
  -- down (compose's): mw's containers and networks go, --volumes its volumes; foreign ones stay
  code, out = E.mw_sync({ "down", "--volumes", file })
  t.eq(code, 0, out)
  t.ok(not e:network_inspect(back), "down removes mw's own network")
  t.same((assert(e:network_inspect(ext_net))).Labels, FOREIGN, "down left the external network, unlabelled")
  t.same((assert(e:volume_inspect(ext_vol))).Labels, FOREIGN, "down --volumes left the external volume, unlabelled")
  code, out = E.mw_sync({ "destroy", file, "--volumes" })
  t.eq(code, 0, out)
  t.ok(not e:network_inspect(back), "mw's own network is removed")
  local still = e:network_inspect(ext_net)
  t.ok(still, "destroy left the external network")
  t.same(still.Labels, FOREIGN, "and did not label it")
  local vol = e:volume_inspect(ext_vol)
  t.ok(vol, "destroy --volumes left the external volume")
  t.same(vol.Labels, FOREIGN, "and did not label it")
end)

t.test("a missing external network or volume fails the start in one line", function()
  local file = E.stack("extmiss", [[
return { name = "NAME",
  networks = { gone = { external = true, name = "mw-no-such-net-]] .. E.run_id .. [[" } },
  components = {
    n = { image = "IMAGE", command = { "sleep", "3600" }, networks = { "gone" },
          restart = function(f) if f.reason == "start_failed" then return "give_up" end return "restart", "1s" end },
    v = { image = "IMAGE", command = { "sleep", "3600" },
          volumes = { { source = "mw-no-such-vol-]] .. E.run_id .. [[", target = "/d", external = true } },
          restart = function(f) if f.reason == "start_failed" then return "give_up" end return "restart", "1s" end },
} }
]])
  local h = E.mw({ "run", "--log-format", "json", file })
  local n = h.wait_event({ event = "gave_up", component = "n" }, 60)
  t.eq(n.reason, "start_failed")
  t.match(n.msg, "external network mw%-no%-such%-net%-.- does not exist")
  local v = h.wait_event({ event = "gave_up", component = "v" }, 60)
  t.eq(v.reason, "start_failed")
  t.match(v.msg, "external volume mw%-no%-such%-vol%-.- does not exist")
  t.ok(not e:network_inspect("mw-no-such-net-" .. E.run_id), "mw did not create the network")
  t.ok(not e:volume_inspect("mw-no-such-vol-" .. E.run_id), "nor the volume")
  h.stop()
end)

t.test("a changed alias recreates the component on reload, stop-first: it keeps its address", function()
  local body = [[
return { name = "NAME", networks = { back = { subnet = "]] .. SUBNET .. [[" } },
  components = {
    api = { image = "IMAGE", heartbeat = true,
            command = { "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" },
            networks = { back = { ipv4_address = "ADDRX", aliases = { "ALIASX" } } } },
} }
]]
  local function render(addr, alias) return (body:gsub("ADDRX", addr):gsub("ALIASX", alias)) end
  local file, stack = E.stack("netrl", render(ADDR, "first"))
  local h = E.mw({ "run", "--log-format", "json", file })
  local back = "mw-" .. stack .. "-back"
  local api = running(stack, "api")
  t.eq(E.net_of(api).NetworkSettings.Networks[back].IPAddress, ADDR)
  h.wait_event({ event = "healthy", component = "api" }, 60)
  -- same address, new alias: the new container can only have the address once the old one is
  -- gone, so the replacement must stop the old first though the component has a heartbeat
  local addr2 = ADDR
  assert(require("mw.fs").write_atomic(file, E.render(render(addr2, "second"), stack), 420))
  local now
  t.wait_for(function()
    local list = E.containers(stack).api
    if not list or #list ~= 1 or list[1].Id == api.Id or list[1].State ~= "running" then return false end
    now = e:inspect(list[1].Id)
    return now ~= nil
  end, 60, "api recreated after the reload")
  local ep = E.net_of(now).NetworkSettings.Networks[back]
  t.eq(ep.IPAddress, addr2)
  local has = false
  for _, a in ipairs(ep.Aliases or {}) do if a == "second" then has = true end end
  t.ok(has, "the new alias is on the endpoint")
  t.eq(h.stop(), 0)
end)

os.exit(E.run(t))
