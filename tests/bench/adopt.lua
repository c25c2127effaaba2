-- Benchmark 6, adoption: a new mw for a stack whose 50 components already run, until every
-- one is adopted and healthy; none may restart (StartedAt unchanged). Anchor: the least a
-- client must do to know them all: one label-filtered list, an inspect of each (in parallel)
-- for its port, and one HTTP GET of each (to its published port, or inside its network
-- namespace when mw's heartbeats take the netns path and nothing is published).
local core = require "mw.core"
local probe = require "mw.probe"
local B = require "benchlib"
local E = B.E

local N = B.knob("BENCH_ADOPT_COMPONENTS", 50)
local TRIALS = B.knob("BENCH_ADOPT_TRIALS", 5)

local function started_at(name)
  local e = E.engine()
  local out = {}
  local list = assert(e:list { label = { "used-by=millwright", "mw.stack=" .. name } })
  B.parallel(list, 10, function(x)
    local info = assert(e:inspect(x.Id))
    out[x.Id] = { started = info.State.StartedAt, restarts = info.RestartCount, status = info.State.Status }
  end)
  return out
end

local function anchor(name)
  local e = E.engine()
  local t0 = core.now()
  -- the components' containers (their network holders, mw.holder, answer nothing of their own)
  local list = assert(e:list { label = { "used-by=millwright", "mw.stack=" .. name, "mw.config-hash" } })
  local ok = 0
  B.parallel(list, #list, function(x)
    local info = assert(e:inspect(x.Id))
    local b = info.NetworkSettings.Ports["8089/tcp"]
    if type(b) == "table" and b[1] then
      if B.answers(tonumber(b[1].HostPort), 2) then ok = ok + 1 end
    else
      -- nothing published (mw's heartbeats take the netns path): ask inside the container's namespace
      local ns = probe.open_netns(info.State.Pid, info.Id)
      local res = ns and probe.get(8089, "/debug/vars", 2, ns)
      if ns then ns:close() end
      if res and res.status == 200 then ok = ok + 1 end
    end
  end)
  assert(ok == N, string.format("anchor: %d of %d answered", ok, N))
  return core.now() - t0
end

return B.main(function()
  B.machine()
  E.image()
  local src = B.stack_source(N, { heartbeat = '{ interval = "1s", timeout = "1s", misses = 3, grace = "10s" }' })
  local file, name, dir = E.stack("adopt", src)
  local names = B.names(N)
  local times, internal, anchors, bad = {}, {}, {}, {}
  local ok, err = pcall(function()
    local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
    h.wait_all("healthy", names, 600)
    h.stop()
    local before = started_at(name)
    for trial = 1, TRIALS do
      core.sleep(1)
      anchors[#anchors + 1] = anchor(name)
      core.sleep(0.5)
      local m = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
      local adopted = m.wait_all("adopted", names, 120)
      local _, last = m.wait_all("healthy", names, 120)
      local first = 0
      for _, ev in pairs(adopted) do first = math.max(first, ev.time) end
      last = math.max(last, first)
      local start = m.wait_event({ event = "start" }, 1)
      times[#times + 1] = last - m.t_spawn
      internal[#internal + 1] = last - start.time
      core.sleep(0.5)
      m.poll()
      for _, ev in ipairs(m.evs) do
        if ev.event == "started" or ev.event == "restarted" or ev.event == "recreated" or ev.event == "failed"
            or ev.event == "removed" then
          bad[#bad + 1] = string.format("trial %d: %s %s", trial, tostring(ev.component), ev.event)
        end
      end
      m.stop()
      print(string.format("  trial %d: all %d adopted and healthy %.3f s after spawn (%.3f s after its start event); anchor %.3f s",
        trial, N, times[#times], internal[#internal], anchors[#anchors]))
    end
    local after = started_at(name)
    for id, b in pairs(before) do
      local a = after[id]
      if not a then bad[#bad + 1] = "container " .. id:sub(1, 12) .. " is gone"
      elseif a.started ~= b.started or a.restarts ~= b.restarts then
        bad[#bad + 1] = "container " .. id:sub(1, 12) .. " restarted (StartedAt " .. b.started .. " -> " .. a.started .. ")"
      end
    end
    for id in pairs(after) do
      if not before[id] then bad[#bad + 1] = "new container " .. id:sub(1, 12) end
    end
  end)
  B.remove_stack(name)
  if not ok then error(err, 0) end
  local p50, a50 = B.median(times), B.median(anchors)
  B.report("Adoption of a running stack (6)", {
    "", "anchor: list + inspect + GET each", "mw: spawn → all adopted and healthy", "mw after its start event", "mw/anchor",
    "target", "met",
  }, {
    { "median", B.s(a50), B.s(p50), B.s(B.median(internal)), B.ratio(p50, a50), "≤ 1 s", B.met(p50 <= 1) },
    { "max", B.s(B.max(anchors)), B.s(B.max(times)), B.s(B.max(internal)), B.ratio(B.max(times), B.max(anchors)), "≤ 1 s",
      B.met(B.max(times) <= 1) },
    { "restarts", "", tostring(#bad), "", "", "0", B.met(#bad == 0) },
  }, {
    string.format("%d components (busybox httpd, 1 s heartbeats), %d trials: mw stopped (containers keep running) and started again", N, TRIALS),
    "restarts: containers whose StartedAt or RestartCount changed, plus any started/restarted/recreated/failed/removed event"
      .. (#bad > 0 and (": " .. table.concat(bad, "; ")) or ""),
  })
end)
