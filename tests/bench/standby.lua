-- Benchmark: warm standby failover. SIGKILL of a component's main process from the host (its
-- State.Pid) until the service answers again *under the component's name*, polled every 5 ms:
-- (a) Docker's RestartPolicy always on the same image, on a network with the alias `web`;
-- (b) mw with `standby = true` (default policy: promote). Both are asked the same way: a relay
-- container on the same network (published on 127.0.0.1 only) resolves `web` with the
-- network's DNS and GETs it, and says UP or DOWN; the host polls the relay. (A published port
-- cannot be the measure for b: a standby cannot hold the active one's fixed host port, and the
-- engine gives an ephemeral one anew when the standby joins the stack's network.)
local core = require "mw.core"
local http = require "mw.http"
local B = require "benchlib"
local E = B.E
local docker = B.docker

local TRIALS = B.knob("BENCH_STANDBY_TRIALS", 20)
local POLL = 0.005
local SETTLE = 0.3

-- The relay's CGI: busybox's static wget cannot resolve names and crashes on a bare address in
-- a FROM-scratch image (static glibc, no NSS), so nslookup asks the network's DNS (127.0.0.11)
-- for `web` and nc sends a GET to each address.
local RELAY_CGI = [[#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
for ip in $(nslookup web 127.0.0.11 2>/dev/null | sed -n 's/^Address: \([0-9.]*\)$/\1/p'); do
  if printf 'GET /debug/vars HTTP/1.0\r\n\r\n' | nc -w 1 "$ip" 8089 | head -1 | grep -q ' 200 '; then echo UP; exit 0; fi
done
echo DOWN
]]

-- A relay on `net` -> its container ID and its 127.0.0.1 port.
local function relay(net, tag)
  local e = E.engine()
  local body = docker.container_spec {
    image = E.image(), labels = B.labels { ["mw.bench"] = tag }, network = net, aliases = {},
    env = { CGI = RELAY_CGI },
    cmd = { "sh", "-c", 'mkdir -p /r/cgi-bin && printf "%s" "$CGI" > /r/cgi-bin/p && chmod +x /r/cgi-bin/p '
      .. "&& exec httpd -f -p 80 -h /r" },
    ports = { { container = 80, ip = "127.0.0.1" } },
  }
  local id = assert(e:create(tag .. "-relay", body))
  assert(e:start(id))
  local info = assert(e:inspect(id))
  return id, tonumber(info.NetworkSettings.Ports["80/tcp"][1].HostPort)
end

local function up_by_name(port)
  local res = http.request { url = "http://127.0.0.1:" .. port .. "/cgi-bin/p", timeout = 2, connect_timeout = 1 }
  return res ~= nil and res.status == 200 and (res.body or ""):find("UP", 1, true) ~= nil
end

-- B.poll_answer's shape (a request every `every` s, not waiting for the one before) over the
-- relay, with fewer in flight: each is a CGI that forks nslookup and nc, and a relay handed 50
-- at once on a loaded machine stopped answering -> core.now() of the first UP | nil
local RELAY_INFLIGHT = 4
local function poll_by_name(port, every, timeout)
  local deadline = core.now() + (timeout or 30)
  local done, inflight = nil, 0
  local cond = core.cond()
  while not done and core.now() < deadline do
    if inflight < RELAY_INFLIGHT then
      inflight = inflight + 1
      core.spawn(function()
        local ok = up_by_name(port)
        inflight = inflight - 1
        if ok and not done then done = core.now(); cond:notify() end
      end, "bench-poll")
    end
    cond:wait(every or 0.005)
  end
  while inflight > 0 do core.sleep(0.01) end
  cond:close()
  return done
end

-- As benchmark 2 (recovery.lua) does it: a fresh container per trial, Docker's restart
-- manager waits 100 ms before a first restart and doubles that for one that ran < 10 s.
local function docker_always()
  local e = E.engine()
  local out = {}
  local t = E.run_id .. "-sb-always"
  local net = assert(e:network_create(t, B.labels { ["mw.bench"] = t }))
  local _, rport = relay(t, t)
  for i = 1, TRIALS do
    local body = docker.container_spec {
      image = E.image(), cmd = B.CMD, labels = B.labels { ["mw.bench"] = t }, network = t, aliases = { "web" },
    }
    body.HostConfig.RestartPolicy = { Name = "always" }
    local id = assert(e:create(string.format("%s-%d", t, i), body))
    assert(e:start(id))
    if not poll_by_name(rport, 0.02, 30) then
      local res, rerr = http.request { url = "http://127.0.0.1:" .. rport .. "/cgi-bin/p", timeout = 5 }
      error("the container never answered by name; the relay says " .. (res and (res.status .. " " .. tostring(res.body)) or tostring(rerr)), 0)
    end
    core.sleep(SETTLE)
    local info = assert(e:inspect(id))
    local t0 = core.now()
    assert(core.kill(info.State.Pid, "KILL"))
    local t1 = assert(poll_by_name(rport, POLL, 30), "docker did not bring it back")
    out[#out + 1] = t1 - t0
    print(string.format("  docker always trial %d: %.1f ms", i, (t1 - t0) * 1000))
    e:remove(id, { force = true })
  end
  B.remove_labelled { "mw.bench=" .. t }
  e:network_remove(net)
  return out
end

-- The stack's running container and its frozen standby (nil until both are there).
local function pair(name)
  local list = assert(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. name } })
  local running, frozen, n = nil, nil, 0
  for _, x in ipairs(list) do
    if x.Labels["mw.component"] == "web" then
      n = n + 1
      if x.State == "running" then running = x elseif x.State == "paused" then frozen = x end
    end
  end
  if n == 2 and running and frozen then return running, frozen end
  return nil
end

local function wait_pair(name, timeout)
  local deadline = core.now() + timeout
  while core.now() < deadline do
    local running, frozen = pair(name)
    if running then return running, frozen end
    core.sleep(0.05)
  end
  error("no running container with a frozen standby beside it after " .. timeout .. " s")
end

local function mw_standby()
  local src = "local CMD = " .. B.lua_list(B.CMD) .. [[

return { name = "NAME", components = {
  web = { image = "IMAGE", command = CMD, standby = true,
          heartbeat = { interval = "100ms", timeout = "1s", misses = 3, grace = "10s" } },
} }
]]
  local file, name, dir = E.stack("standby", src)
  local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
  local comp = "web"
  local rec, logged, unpause, alias = {}, {}, {}, {}
  local ok, err = pcall(function()
    h.wait_event({ event = "healthy", component = comp }, 60)
    local _, port = relay("mw-" .. name, name)
    for i = 1, TRIALS do
      local running = wait_pair(name, 60)
      local e = E.engine()
      assert(poll_by_name(port, 0.02, 90), "web does not answer by its name")
      core.sleep(SETTLE)
      local info = assert(e:inspect(running.Id))
      h.poll()
      local mark = #h.evs
      local tw = core.time()
      local t0 = core.now()
      assert(core.kill(info.State.Pid, "KILL"))
      local t1 = poll_by_name(port, POLL, 30)
      if not t1 then error("the promoted standby did not answer by the name web; log tail:\n" .. h.text():sub(-3000), 0) end
      rec[#rec + 1] = t1 - t0
      local p = h.wait_event({ event = "promote", component = comp }, 30, mark)
      logged[#logged + 1] = p.time - tw
      unpause[#unpause + 1] = (p.unpause_ms or 0) / 1000
      alias[#alias + 1] = (p.alias_ms or 0) / 1000
      h.wait_event({ event = "healthy", component = comp }, 30, mark)
      print(string.format("  mw standby trial %d: answering in %.1f ms, promote logged after %.1f ms "
        .. "(unpause %.1f ms, alias %.1f ms)", i, (t1 - t0) * 1000, logged[#logged] * 1000,
        unpause[#unpause] * 1000, alias[#alias] * 1000))
    end
  end)
  h.stop()
  B.remove_labelled { "mw.bench=" .. name }
  B.remove_stack(name)
  if not ok then error(err, 0) end
  return rec, logged, unpause, alias
end

return B.main(function()
  B.machine()
  E.image()
  local always = docker_always()
  local sb, logged, unpause, alias = mw_standby()
  local a50, a95 = B.pct(always, 50), B.pct(always, 95)
  local s50, s95 = B.pct(sb, 50), B.pct(sb, 95)
  local rows = {
    { "p50", B.ms(a50), B.ms(s50), B.ratio(s50, a50), "≤ 0.25", B.met(s50 <= 0.25 * a50) },
    { "p95", B.ms(a95), B.ms(s95), B.ratio(s95, a95), "≤ 0.35", B.met(s95 <= 0.35 * a95) },
    { "min / max", B.ms(B.min(always)) .. " / " .. B.ms(B.max(always)), B.ms(B.min(sb)) .. " / " .. B.ms(B.max(sb)),
      "", "", "" },
    { "mw: kill → \"promote\" logged (alias given)", "n/a", B.ms(B.pct(logged, 50)) .. " p50", "", "", "" },
    { "mw: unpause call / alias connect (p50)", "n/a", B.ms(B.pct(unpause, 50)) .. " / " .. B.ms(B.pct(alias, 50)),
      "", "", "" },
  }
  B.report("Warm standby failover after kill -9", {
    "", "a docker --restart=always", "b mw standby (promote)", "b/a", "target", "",
  }, rows, {
    string.format("%d trials each; SIGKILL to the container's host pid, then every 5 ms a GET of `web` by name "
      .. "through a relay on the same network (nslookup + nc, published on 127.0.0.1) until it says UP", TRIALS),
    "a: a fresh container per trial, alias web on its own network; b: the stack's network, where only the active one has the alias",
    "b: mw watches the main process through a pidfd and promotes at its exit (unpause, and the alias at the same time)",
  })
end)
