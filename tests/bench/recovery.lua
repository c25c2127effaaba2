-- Benchmarks 2 and 3: recovery and detection. SIGKILL of a component's main process from the
-- host (its State.Pid) until its HTTP endpoint answers again, polled every 5 ms on a fixed
-- 127.0.0.1 port: (a) Docker's own RestartPolicy always, (b) mw restarting in place (policy
-- always, constant 0 backoff), (c) mw recreating (a policy function returning "recreate", 0).
-- Detection: from the kill to mw's "failed" event (both mw runs pooled); from `docker pause`
-- to the heartbeat failure.
local core = require "mw.core"
local B = require "benchlib"
local E = B.E
local docker = B.docker

local TRIALS = B.knob("BENCH_RECOVERY_TRIALS", 20)
local PAUSE_TRIALS = B.knob("BENCH_PAUSE_TRIALS", 20)
local PAUSE_SLOW_TRIALS = B.knob("BENCH_PAUSE_SLOW_TRIALS", 5)
local POLL = 0.005
local SETTLE = 0.3

local function docker_always()
  local e = E.engine()
  local out = {}
  local t = E.run_id .. "-always"
  for i = 1, TRIALS do
    local port = B.free_port()
    local body = docker.container_spec {
      image = E.image(), cmd = B.CMD, labels = B.labels { ["mw.bench"] = t },
      ports = { { container = 8089, ip = "127.0.0.1", host = port } },
    }
    -- a fresh container per trial: Docker's restart manager waits 100 ms before a first
    -- restart and doubles that for a container that ran less than 10 s, so reusing one would
    -- be unfair to it
    body.HostConfig.RestartPolicy = { Name = "always" }
    local id = assert(e:create(string.format("%s-%d", t, i), body))
    assert(e:start(id))
    assert(B.poll_answer(port, 0.02, 30), "the container never answered")
    core.sleep(SETTLE)
    local info = assert(e:inspect(id))
    local t0 = core.now()
    assert(core.kill(info.State.Pid, "KILL"))
    local t1 = assert(B.poll_answer(port, POLL, 30), "docker did not bring it back")
    out[#out + 1] = t1 - t0
    print(string.format("  docker always trial %d: %.1f ms", i, (t1 - t0) * 1000))
    e:remove(id, { force = true })
  end
  return out
end

local PRELUDE = 'local policy = require "mw.policy"\nlocal backoff = require "mw.backoff"\n'

-- The running container of the stack's only component.
local function current(name)
  local list = assert(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. name } })
  for _, x in ipairs(list) do
    if x.State == "running" then return x end
  end
  return nil
end

-- mw with one component under `restart`; kills it TRIALS times. -> recovery times, detection
-- times (kill to "failed"), restart-done times (kill to "restarted"/"recreated"), distinct ids.
local function mw_kills(short, restart)
  local port = B.free_port()
  local src = B.stack_source(1, {
    prelude = PRELUDE,
    heartbeat = '{ interval = "100ms", timeout = "1s", misses = 3, grace = "10s" }',
    ports = string.format('{ "127.0.0.1:%d:8089" }', port),
    restart = restart,
  })
  local file, name, dir = E.stack(short, src)
  local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
  local comp = B.cname(1)
  local rec, det, done, ids, down = {}, {}, {}, {}, {}
  local ok, err = pcall(function()
    h.wait_event({ event = "healthy", component = comp }, 60)
    for i = 1, TRIALS do
      assert(B.poll_answer(port, 0.02, 30), "no answer before the kill")
      core.sleep(SETTLE)
      local x = assert(current(name), "no running container")
      ids[x.Id] = true
      local info = assert(E.engine():inspect(x.Id))
      h.poll()
      local mark = #h.evs
      local tw = core.time()
      local t0 = core.now()
      assert(core.kill(info.State.Pid, "KILL"))
      local t1 = assert(B.poll_answer(port, POLL, 30), "mw did not bring it back")
      rec[#rec + 1] = t1 - t0
      local f = h.wait_event({ event = "failed", component = comp }, 30, mark)
      det[#det + 1] = f.time - tw
      -- a build that watches the main process through a pidfd says "down" before "failed"
      for k = mark + 1, #h.evs do
        local ev = h.evs[k]
        if ev.event == "down" and ev.component == comp then down[#down + 1] = ev.time - tw break end
      end
      local r = h.wait(function(ev)
        return ev.component == comp and (ev.event == "restarted" or ev.event == "recreated")
      end, 30, mark)
      done[#done + 1] = r.time - tw
      h.wait_event({ event = "healthy", component = comp }, 30, mark)
      print(string.format("  mw %s trial %d: back in %.1f ms, failed logged after %.1f ms, %s after %.1f ms%s",
        short, i, (t1 - t0) * 1000, det[#det] * 1000, r.event, done[#done] * 1000,
        #down == i and string.format(", down after %.1f ms", down[i] * 1000) or ""))
    end
  end)
  h.stop()
  B.remove_stack(name)
  if not ok then error(err, 0) end
  local n = 0
  for _ in pairs(ids) do n = n + 1 end
  return rec, det, done, n, down
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
  local always = docker_always()
  local rb, db, doneb, idsb, downb = mw_kills("restart", "policy.always { backoff = backoff.constant { delay = 0 } }")
  local rc, dc, donec, idsc, downc = mw_kills("recreate", 'function() return "recreate", 0 end')

  local a50, a95 = B.pct(always, 50), B.pct(always, 95)
  local rows = {
    { "p50", B.ms(a50), B.ms(B.pct(rb, 50)), B.ms(B.pct(rc, 50)), B.ratio(B.pct(rb, 50), a50),
      B.ratio(B.pct(rc, 50), a50), B.met(B.pct(rb, 50) <= a50) },
    { "p95", B.ms(a95), B.ms(B.pct(rb, 95)), B.ms(B.pct(rc, 95)), B.ratio(B.pct(rb, 95), a95),
      B.ratio(B.pct(rc, 95), a95), B.met(B.pct(rb, 95) <= a95) },
    { "min / max", B.ms(B.min(always)) .. " / " .. B.ms(B.max(always)), B.ms(B.min(rb)) .. " / " .. B.ms(B.max(rb)),
      B.ms(B.min(rc)) .. " / " .. B.ms(B.max(rc)), "", "", "" },
    { "mw's restart done (log)", "n/a", B.ms(B.pct(doneb, 50)) .. " p50", B.ms(B.pct(donec, 50)) .. " p50", "", "", "" },
  }
  B.report("Recovery after kill -9 (2)", {
    "", "a docker --restart=always", "b mw restart in place", "c mw recreate", "b/a", "c/a", "target b/a ≤ 1.0",
  }, rows, {
    string.format("%d trials each; SIGKILL to the container's host pid, then GET on its fixed 127.0.0.1 port every 5 ms until 200", TRIALS),
    "a: a fresh container per trial (Docker waits 100 ms before a first restart, doubling for one that ran < 10 s)",
    string.format("b kept one container (%d id%s seen), c made a new one each time (%d ids seen)", idsb, idsb == 1 and "" or "s", idsc),
    "mw's restart done: kill to mw's \"restarted\"/\"recreated\" log line (after its post-start inspect)",
  })

  local det, down = {}, {}
  for _, x in ipairs(db) do det[#det + 1] = x end
  for _, x in ipairs(dc) do det[#det + 1] = x end
  for _, x in ipairs(downb) do down[#down + 1] = x end
  for _, x in ipairs(downc) do down[#down + 1] = x end
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
    "kill: the kill trials of (2) b and c pooled; times are the bench's clock before kill(2) and the \"time\" of mw's JSON "
      .. "events (same machine, same CLOCK_REALTIME): \"down\" when mw sees the main process exit through a pidfd (builds "
      .. "that have it), \"failed\" when the failure goes to the policy, which waits for the engine's die event and its exit code",
    string.format("pause: timed from the start of the pause call (which took %s p50) to the \"failed\" event with "
      .. "reason heartbeat; mw then unpauses, kills and restarts it", B.ms(B.pct(allc, 50))),
  })
end)
