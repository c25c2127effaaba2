-- Benchmarks 2 and 3: recovery and detection, as a user sees them (issue 17). Eight
-- components of the busybox httpd image run twice side by side: eight containers under
-- Docker's RestartPolicy always, and an mw stack of eight under the DEFAULT policy (with
-- heartbeats, as a stack has them). Trials alternate between the two: SIGKILL to a component's
-- main process from the host (its State.Pid) until its HTTP endpoint answers again, polled
-- every 5 ms on its fixed 127.0.0.1 port. Before each kill the victim has run for
-- STABLE seconds, past both Docker's 10 s (its first restart then waits 100 ms, never more) and
-- mw's reset_after (its first restart is immediate): each side at its best.
-- Detection: from the kill to mw's "down" (pidfd) and "failed" events; from `docker pause` to
-- the heartbeat failure.
local core = require "mw.core"
local B = require "benchlib"
local E = B.E
local docker = B.docker

local N = B.knob("BENCH_RECOVERY_N", 8)
local TRIALS = B.knob("BENCH_RECOVERY_TRIALS", 8)       -- per side
local PAUSE_TRIALS = B.knob("BENCH_PAUSE_TRIALS", 20)
local PAUSE_SLOW_TRIALS = B.knob("BENCH_PAUSE_SLOW_TRIALS", 5)
-- BENCH_RECOVERY_ARP=off: mw without its address announcement after a restart (to see what it gives)
local ARP = os.getenv("BENCH_RECOVERY_ARP") or "on"
-- BENCH_RECOVERY_DOCKER_NET: the network of Docker's containers. "user" (the default): one
-- network made for them, as compose makes one per project and mw one per stack; "bridge":
-- the engine's default bridge, which on 20.10 starts a container ~150 ms sooner (no embedded
-- DNS resolver to set up in its namespace: `docker start`, 4 runs each here, 736-763 ms on a
-- user network against 556-618 ms on the default bridge).
local DOCKER_NET = os.getenv("BENCH_RECOVERY_DOCKER_NET") or "user"
local POLL = 0.005
local STABLE = 10.5
local SETTLE = 0.3

local PRELUDE = 'local policy = require "mw.policy"\nlocal backoff = require "mw.backoff"\n'

-- Docker's side: N containers under RestartPolicy always -> a list of { port, id, up }.
local function docker_side()
  local e = E.engine()
  local t = E.run_id .. "-always"
  local out = {}
  local net
  if DOCKER_NET == "user" then
    net = t
    assert(e:network_create(net, B.labels { ["mw.bench"] = t }))
  end
  for i = 1, N do
    local port = B.free_port()
    local body = docker.container_spec {
      image = E.image(), cmd = B.CMD, labels = B.labels { ["mw.bench"] = t }, network = net,
      ports = { { container = 8089, ip = "127.0.0.1", host = port } },
    }
    body.HostConfig.RestartPolicy = { Name = "always" }
    local id = assert(e:create(string.format("%s-%d", t, i), body))
    assert(e:start(id))
    out[i] = { port = port, id = id }
  end
  for _, c in ipairs(out) do
    assert(B.poll_answer(c.port, 0.02, 60), "a docker container never answered")
    c.up = core.now()
  end
  return out
end

-- Waits until the victim has run STABLE seconds, kills its main process, times the answer.
local function kill_and_time(c, pid)
  local wait = c.up + STABLE - core.now()
  if wait > 0 then core.sleep(wait) end
  assert(B.answers(c.port, 1), "no answer before the kill")
  core.sleep(SETTLE)
  local tw = core.time()
  local t0 = core.now()
  assert(core.kill(pid, "KILL"))
  local t1 = assert(B.poll_answer(c.port, POLL, 30), "it did not come back")
  c.up = t1
  return t1 - t0, tw
end

local function recovery()
  local e = E.engine()
  local ports = {}
  for i = 1, N do ports[i] = B.free_port() end
  local src = B.stack_source(N, {
    prelude = PRELUDE,
    heartbeat = '{ interval = "1s", timeout = "1s", misses = 3, grace = "10s" }',
    ports = function(i) return string.format('{ "127.0.0.1:%d:8089" }', ports[i]) end,
    fields = os.getenv("BENCH_RECOVERY_FIELDS"),      -- e.g. "hold_network = false"
  })
  local file, name, dir = E.stack("recovery", src)
  local h = B.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file },
    { env = { ARP == "off" and "MW_ARP_ANNOUNCE=off" or nil } })
  local dock, mws = {}, {}
  local a, b, det, down, done, paths = {}, {}, {}, {}, {}, {}
  local ok, err = pcall(function()
    dock = docker_side()
    h.wait_all("healthy", B.names(N), 120)
    for i = 1, N do
      mws[i] = { port = ports[i], comp = B.cname(i) }
      assert(B.poll_answer(ports[i], 0.02, 30), "an mw component never answered")
      mws[i].up = core.now()
    end
    for k = 1, TRIALS do
      local i = (k - 1) % N + 1
      -- Docker's turn
      local dc = dock[i]
      local info = assert(e:inspect(dc.id))
      local ta = kill_and_time(dc, info.State.Pid)
      a[#a + 1] = ta
      -- mw's turn: the same, then what mw logged on the way
      local mc = mws[i]
      local x
      for _, listed in ipairs(assert(e:list { label = { "mw.stack=" .. name, "mw.component=" .. mc.comp } })) do
        if listed.State == "running" then x = listed end
      end
      assert(x, "no running container of " .. mc.comp)
      local minfo = assert(e:inspect(x.Id))
      h.poll()
      local mark = #h.evs
      local tb, tw = kill_and_time(mc, minfo.State.Pid)
      b[#b + 1] = tb
      local f = h.wait_event({ event = "failed", component = mc.comp }, 30, mark)
      det[#det + 1] = f.time - tw
      local r = h.wait(function(ev)
        return ev.component == mc.comp and (ev.event == "restarted" or ev.event == "recreated")
      end, 30, mark)
      done[#done + 1] = r.time - tw
      local dn
      for j = mark + 1, #h.evs do
        local ev = h.evs[j]
        if ev.event == "down" and ev.component == mc.comp then dn = ev.time - tw break end
      end
      if dn then down[#down + 1] = dn end
      paths[#paths + 1] = f.msg
      print(string.format("  trial %d (%s): docker always %.1f ms, mw %.1f ms (%.2f); mw: down %s, failed %.1f ms, %s %.1f ms",
        k, mc.comp, ta * 1000, tb * 1000, tb / ta, dn and string.format("%.1f ms", dn * 1000) or "n/a",
        det[#det] * 1000, r.event, done[#done] * 1000))
      h.wait_event({ event = "healthy", component = mc.comp }, 60, mark)
    end
  end)
  h.stop()
  B.remove_stack(name)
  B.remove_labelled { "mw.bench=" .. E.run_id .. "-always" }
  if not ok then error(err, 0) end
  return a, b, det, down, done, paths
end

-- The running container of the stack's only component.
local function current(name)
  local list = assert(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. name } })
  for _, x in ipairs(list) do
    if x.State == "running" then return x end
  end
  return nil
end

-- docker pause until mw logs the heartbeat failure; mw restarts it after each.
local function pause_detect(short, interval, misses, trials)
  local src = B.stack_source(1, {
    prelude = PRELUDE,
    heartbeat = string.format('{ interval = %q, timeout = "1s", misses = %d, grace = "10s" }', interval, misses),
    restart = "policy.always { backoff = backoff.constant { delay = 0 } }",
  })
  local file, name, dir = E.stack(short, src)
  local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
  local comp = B.cname(1)
  local det, calls = {}, {}
  local ok, err = pcall(function()
    h.wait_event({ event = "healthy", component = comp }, 60)
    for i = 1, trials do
      core.sleep(SETTLE + math.random() * 0.2)
      local x = assert(current(name), "no running container")
      h.poll()
      local mark = #h.evs
      local tw = core.time()
      assert(E.engine():pause(x.Id))
      calls[#calls + 1] = core.time() - tw
      local f = h.wait(function(ev)
        return ev.event == "failed" and ev.component == comp and ev.reason == "heartbeat"
      end, 60, mark)
      det[#det + 1] = f.time - tw
      h.wait_event({ event = "healthy", component = comp }, 60, mark)
      print(string.format("  pause %s trial %d: failure logged after %.1f ms (pause call %.1f ms)", interval, i,
        det[#det] * 1000, calls[#calls] * 1000))
    end
  end)
  h.stop()
  B.remove_stack(name)
  if not ok then error(err, 0) end
  return det, calls
end

return B.main(function()
  B.machine()
  E.image()
  local always, rb, det, down, doneb, msgs = recovery()
  local a50, a95 = B.pct(always, 50), B.pct(always, 95)
  local b50, b95 = B.pct(rb, 50), B.pct(rb, 95)
  local rows = {
    { "p50", B.ms(a50), B.ms(b50), B.ratio(b50, a50), "≤ 0.75", B.met(b50 and a50 and b50 <= 0.75 * a50) },
    { "p95", B.ms(a95), B.ms(b95), B.ratio(b95, a95), "≤ 0.85", B.met(b95 and a95 and b95 <= 0.85 * a95) },
    { "min / max", B.ms(B.min(always)) .. " / " .. B.ms(B.max(always)), B.ms(B.min(rb)) .. " / " .. B.ms(B.max(rb)),
      "", "", "" },
    { "mw: kill → \"failed\" (die event, policy)", "", B.ms(B.pct(det, 50)) .. " p50", "", "", "" },
    { "mw: kill → \"restarted\" (after its post-start inspect)", "", B.ms(B.pct(doneb, 50)) .. " p50", "", "", "" },
  }
  B.report("Recovery after kill -9 (2)", {
    "", "a docker --restart=always", "b mw, default policy", "b/a", "target", "",
  }, rows, {
    string.format("%d components each side, %d trials each, alternating a and b; SIGKILL to the main process's host pid, "
      .. "then GET on its 127.0.0.1 port every 5 ms until 200", N, #always),
    "Docker's containers on " .. (DOCKER_NET == "user" and "a network made for them (as compose makes one per project; "
      .. "mw's are on the stack's network)" or "the engine's default bridge (BENCH_RECOVERY_DOCKER_NET=bridge)"),
    "mw's address announcement after a restart (README, restart policies): " .. (ARP == "off"
      and "off (BENCH_RECOVERY_ARP=off: MW_ARP_ANNOUNCE=off)" or "on, where mw may enter namespaces"),
    string.format("each victim ran %.1f s first: Docker's restart then waits its floor of 100 ms, mw's first restart "
      .. "is immediate (policy: %s)", STABLE, tostring(require("mw.policy").default)),
    "mw's \"failed\" line of the last trial: " .. tostring(msgs[#msgs]),
  })

  local p1, c1 = pause_detect("pause1", "100ms", 3, PAUSE_TRIALS)
  local p2, c2 = {}, {}
  if PAUSE_SLOW_TRIALS > 0 then p2, c2 = pause_detect("pause2", "500ms", 3, PAUSE_SLOW_TRIALS) end
  local rows3 = {
    { "kill -9 → first log of it (\"down\", pidfd)", "pidfd: ~2 ms (notes)", "≤ 20 ms",
      #down > 0 and B.ms(B.pct(down, 50)) or "none logged", B.ms(B.pct(down, 99)), B.ms(B.max(down)), tostring(#down),
      B.met(#down > 0 and #down == #det and B.pct(down, 99) <= 0.020) },
    { "kill -9 → \"failed\" logged (with the exit code)", "engine die event: 72–84 ms (notes)", "≤ 20 ms",
      B.ms(B.pct(det, 50)), B.ms(B.pct(det, 99)), B.ms(B.max(det)), tostring(#det), B.met(B.pct(det, 99) <= 0.020) },
    { "docker pause → heartbeat failure (100 ms × 3)", "300 ms", "≤ 315 ms",
      B.ms(B.pct(p1, 50)), B.ms(B.pct(p1, 99)), B.ms(B.max(p1)), tostring(#p1), B.met(#p1 > 0 and B.pct(p1, 99) <= 0.315) },
  }
  -- the freeze happens somewhere inside the pause call: timed from its return too
  local function after(det_, calls_)
    local out = {}
    for i, d in ipairs(det_) do out[i] = d - calls_[i] end
    return out
  end
  local r1 = after(p1, c1)
  rows3[#rows3 + 1] = { "… the same from the pause call's return", "300 ms", "≤ 315 ms",
    B.ms(B.pct(r1, 50)), B.ms(B.pct(r1, 99)), B.ms(B.max(r1)), tostring(#r1), B.met(#r1 > 0 and B.pct(r1, 99) <= 0.315) }
  if #p2 > 0 then
    rows3[#rows3 + 1] = { "docker pause → heartbeat failure (500 ms × 3)", "1500 ms", "≤ 1575 ms",
      B.ms(B.pct(p2, 50)), B.ms(B.pct(p2, 99)), B.ms(B.max(p2)), tostring(#p2), B.met(B.pct(p2, 99) <= 1.575) }
    local r2 = after(p2, c2)
    rows3[#rows3 + 1] = { "… the same from the pause call's return", "1500 ms", "≤ 1575 ms",
      B.ms(B.pct(r2, 50)), B.ms(B.pct(r2, 99)), B.ms(B.max(r2)), tostring(#r2), B.met(B.pct(r2, 99) <= 1.575) }
  end
  local allc = {}
  for _, x in ipairs(c1) do allc[#allc + 1] = x end
  for _, x in ipairs(c2) do allc[#allc + 1] = x end
  B.report("Failure detection (3)", {
    "from → to", "anchor", "target", "mw p50", "mw p99", "mw max", "n", "p99 target",
  }, rows3, {
    "kill: the kill trials of (2) b; times are the bench's clock before kill(2) and the \"time\" of mw's JSON "
      .. "events (same machine, same CLOCK_REALTIME): \"down\" when mw sees the main process exit through a pidfd (builds "
      .. "that have it), \"failed\" when the failure goes to the policy, which waits for the engine's die event and its exit code",
    string.format("pause: timed from the start of the pause call (which took %s p50) to the \"failed\" event with "
      .. "reason heartbeat; mw then unpauses, kills and restarts it", B.ms(B.pct(allc, 50))),
  })
end)
