-- The supervisor's heartbeats: probes on a shared grid, the failure deadline, and the holds
-- when many instances go silent at once.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new) and `group` a component's instances.
local core = require "mw.core"
local probe = require "mw.probe"
local net = require "mw.net"
local log = require "mw.log"
local instance = require "mw.instance"
local usercode = require "mw.usercode"

local transition = instance.transition
local failure_text = usercode.failure_text
local POLICY_BUDGET = usercode.BUDGET

local Sup = {}

-- ---------------------------------------------------------------------------------------------
-- heartbeats

-- Where a probe goes: the container port in the container's own network namespace, or the
-- host port it is published on -> port, ns | nil, why
local function target(inst, hb)
  local st = inst.hb
  if st.netns then return hb.port, st.netns end
  if st.host_port then return st.host_port end
  return nil, "heartbeat port " .. tostring(hb.port) .. " is not published"
    .. (st.netns_error and " and its network namespace cannot be entered (" .. st.netns_error .. ")" or "")
end

-- An HTTP answer (mw.probe's) judged by the heartbeat's settings -> ok, why
local function judge_http(inst, hb, res, err)
  if not res then return false, err end
  if res.status < 200 or res.status >= 400 then return false, "HTTP " .. res.status end
  inst.hb.body = res.body      -- autoscale decisions may read it
  if hb.check then
    local ok, good, why = core.budget(hb.check, POLICY_BUDGET, res.body)
    if not ok then
      if not inst.hb.check_failed then
        inst.hb.check_failed = true
        log.warn(inst.key, "check_error", "heartbeat check failed (" .. failure_text(good) .. "); the heartbeat counts as failed")
      end
      return false, "check failed: " .. failure_text(good)
    end
    inst.hb.check_failed = nil
    if not good then
      return false, type(why) == "string" and (#why > 200 and why:sub(1, 200) .. "..." or why) or "check said unhealthy"
    end
  end
  return true
end

local function probe_http(_, inst, hb)
  local port, ns = target(inst, hb)
  if not port then return false, ns end
  return judge_http(inst, hb, probe.get(port, hb.path, hb.timeout, ns, nil, inst.hb.keep))
end

local function probe_tcp(_, inst, hb)
  local port, ns = target(inst, hb)
  if not port then return false, ns end
  return probe.tcp(port, hb, ns)
end

local function probe_exec(self, inst, hb)
  local code, out = self.engine:exec(inst.id, hb.exec, { timeout = hb.timeout })
  if code == nil then return false, out end
  if code ~= 0 then return false, "exit code " .. tostring(code) end
  return true
end

local PROBES = { http = probe_http, tcp = probe_tcp, exec = probe_exec }

local FIRST_PROBE = 0.005   -- while starting, probes go at least this far apart
local EARLY = 0.002         -- a timer may fire this much before its time (libuv counts in ms)
local LATE = 0.005          -- a timer this late means mw did not get the CPU in time
local HB_RESTARTS = 3       -- restarts for heartbeat failures in flight at once, per stack
local HB_SLOTS = 8          -- phases of the tick grid that instances are dealt over
local START_INFLIGHT = 4    -- probes out at once while starting (one once healthy)
local BEAT_REPORT = 5       -- seconds a healthy instance's probes in C (net.beat) go untaken at most

-- The first tick of the grid (interval i, phase slot x i) after now.
local function grid_after(now, i, slot)
  local off = slot * i
  return (math.floor((now + EARLY - off) / i) + 1) * i + off
end

-- One task per instance sends a probe every interval, with at most one in flight: a probe
-- still out at the next tick is a miss, and no second one is piled on it (a slow component
-- gets no more load than one question at a time). Ticks fall on a grid shared by every
-- instance with the same interval (multiples of it on mw's clock, at one of HB_SLOTS phases
-- dealt round-robin), so N instances are probed in HB_SLOTS wake-ups of the loop, not N:
-- staggered at random, 100 instances at 1 s cost 1.9 % of a core against 1.4 % on one grid
-- (6x the epoll_waits); the phases keep a burst to N / HB_SLOTS connections (1000 at once
-- made one server of 1000 endpoints answer late; tests/bench/RESULTS.md).
--
-- The failure rule is one of time: a healthy instance that has answered well none of the
-- probes sent in the last misses x interval has failed, whatever the phase of the interval
-- when it hung: a hang is found within misses x interval, and no sooner than
-- (misses - 1) x interval. (A slow answer counts from the tick before it came, or a good
-- answer that took longer than the window would fail at once; with misses = 1 the probe
-- after the last good one gets min(timeout, interval).)
--
-- While starting, HTTP and TCP probes go fast (5 ms apart, then an eighth of the time since
-- the start) so "healthy" follows readiness by milliseconds, not by up to an interval; a
-- starting instance fails when it has not answered well within grace (and at least misses x
-- interval).
function Sup:start_heartbeat(inst)
  self:stop_heartbeat(inst)
  local hb = inst.def.heartbeat
  if not hb then return end
  local gen = {}
  local st = inst.hb
  self:open_hb_netns(inst, st, hb)
  st.gen, st.misses = gen, 0
  self.hb_dealt = ((self.hb_dealt or 0) + 1) % HB_SLOTS
  st.slot = self.hb_dealt / HB_SLOTS       -- the phase, as a fraction of the interval
  st.task = self:spawn(inst.key .. "-heartbeat", function()
    local started = core.now()
    -- an exec probe is a process in the container and ~0.1 s of the engine's: never fast
    local fast = hb.kind ~= "exec"
    local probe_out
    local next_tick = started
    while st.gen == gen and inst.hb == st do
      hb = inst.def.heartbeat         -- a reload may have changed the settings
      if not hb then return end
      local now = core.now()
      if now >= next_tick - EARLY and self:may_beat(inst, hb) and self:run_beat(inst, st, hb, started, gen) then
        if st.gen ~= gen then return end
        next_tick = grid_after(core.now(), hb.interval, st.slot)      -- the Lua probes go on from here
      elseif now >= next_tick - EARLY then
        -- while starting, a few probes may overlap: through docker-proxy a probe sent before
        -- the service listens can take 60 ms to fail, and waiting for it would put off the one
        -- that finds it ready
        local overlap = false
        -- a check that overran its budget keeps to the interval: each overrun holds the loop
        if inst.hb.check_failed then fast = false end
        if inst.state == "starting" and fast then
          local out = 0
          for _ in pairs(inst.probes) do out = out + 1 end
          overlap = out < START_INFLIGHT
        end
        if probe_out and not probe_out.done and not overlap then
          self:miss(inst, "no answer within " .. log.dur(hb.interval), started)
        else
          local p = { sent = now }
          probe_out = p
          p.task = core.spawn(function()
            local ok, why = PROBES[hb.kind](self, inst, hb)
            p.done = true
            inst.probes[p] = nil
            if st.gen ~= gen then return end
            if ok then self:good(inst, core.now() - p.sent, p.sent) else self:miss(inst, why, started, core.now() - p.sent) end
          end, inst.key .. "-probe")
          inst.probes[p] = true
        end
        if st.gen ~= gen then return end
        if inst.state == "starting" and fast then
          -- every 5 ms at first, then an eighth of the time since the start: healthy comes at
          -- most 12.5 % (or 5 ms) after the service answers, for ~8 probes per doubling of it
          next_tick = now + math.min(hb.interval, math.max(FIRST_PROBE, (now - started) / 8))
        else
          next_tick = grid_after(now, hb.interval, st.slot)
        end
      end
      -- wake at the failure deadline if it comes before the next tick (one already past, for
      -- an instance held, leaves the tick as it is)
      local wake = next_tick
      local due = self:hb_deadline(inst, started)
      if due and due > now and due < wake then wake = due end
      core.sleep(math.max(0, wake - core.now()))
      -- woken late, mw itself was starved of CPU (an engine starting many containers can take
      -- both cores): an answer may sit unread, and libuv runs timers before it polls. Let the
      -- loop read what came before judging.
      if core.now() - wake > LATE then core.sleep(0.002) end
      if st.gen == gen then self:hb_check(inst, started) end
    end
  end)
end

-- Whether a healthy instance's probes may run in C (net.beat): HTTP, judged by the status
-- alone (no check; no autoscaler reading the body), on a kept connection, and none out in Lua.
function Sup:may_beat(inst, hb)
  return self.hb_beat and self.hb_keep and hb.kind == "http" and inst.state == "healthy" and next(inst.probes) == nil
    and self:may_beat_on(inst, hb)
end

-- Runs the instance's probes in C (net.beat) while it is healthy or unhealthy and its settings
-- stand, on the same grid, with the same judgement and failure deadline as the Lua loop:
-- good answers are taken in batches while healthy (BEAT_REPORT), every other news at once.
-- -> false when it could not start (no target), true when it ran and stopped.
function Sup:run_beat(inst, st, hb, started, gen)
  local port, ns = target(inst, hb)
  if not port then return false end
  local beat = st.beat or net.beat()
  st.beat = beat
  local armed, aerr = beat:arm(port, probe.request_for(hb.path, port, true), hb.interval, st.slot or 0, hb.timeout, ns,
    probe.MAX_BODY + 16384, probe.CLOSE_GRACE)
  if not armed then
    log.warn(inst.key, "heartbeat", "probes stay in Lua: " .. tostring(aerr))
    return false
  end
  if st.keep then st.keep:close() st.keep = nil end         -- the beat keeps its own connection
  -- whether this run may go on: the heartbeat's state was not replaced or stopped meanwhile
  local function ours() return st.gen == gen and inst.hb == st and st.beat == beat end
  while ours() and inst.def.heartbeat == hb and self:may_beat_on(inst, hb) do
    local wait = BEAT_REPORT
    if inst.state == "unhealthy" then
      -- at least once a tick, as the Lua loop checks: a held restart is let go in time
      wait = math.min(wait, hb.interval)
      local due = self:hb_deadline(inst, started)
      if due and due > core.now() then wait = math.min(wait, due - core.now()) end
    end
    local asked = core.now() + wait
    local woke = beat:wait(inst.state == "healthy", wait)
    if not ours() then return true end
    -- woken late by the timeout, mw was starved: an answer may wait unread (see the Lua loop)
    if not woke and core.now() - asked > LATE then core.sleep(0.002) end
    if not ours() or not self:take_beats(inst, st, beat, hb, started, gen) then return true end
    self:hb_check(inst, started)
  end
  if ours() then
    self:take_beats(inst, st, beat, hb, started, gen)
    if ours() then beat:disarm() end
  end
  if inst.hb == st and self.hb_keep and not st.keep then st.keep = net.keep() end
  return true
end

-- Whether probes in C go on once begun: as may_beat, but through unhealthy too.
function Sup:may_beat_on(inst, hb)
  return not hb.check and not inst.def.autoscale and (inst.state == "healthy" or inst.state == "unhealthy")
end

-- Takes a beat's news in order, as the Lua loop would have judged it -> false when the
-- heartbeat stopped meanwhile (a miss may fail the instance).
function Sup:take_beats(inst, st, beat, hb, started, gen)
  while true do
    local kind, latency, sent, at, data, stage, err, size = beat:next()
    if not kind then return true end
    if kind == "good" then
      self:good(inst, latency, sent, at)
    elseif kind == "late" then
      self:miss(inst, "no answer within " .. log.dur(hb.interval), started)
    else
      local ok, why = judge_http(inst, hb, probe.answer(hb.timeout, probe.MAX_BODY, data, stage, err, size))
      if st.gen ~= gen then return false end
      if ok then self:good(inst, latency, sent, at) else self:miss(inst, why, started, latency) end
    end
    if st.gen ~= gen or st.beat ~= beat then return false end
  end
end

-- On the netns path, opens the network namespace of the instance's main process (once a
-- start: a restart is a new process in a new namespace) for its HTTP/TCP probes; st.via says
-- which path they take. Closed by stop_heartbeat (every failure, stop and retirement passes
-- there) or by the next open.
function Sup:open_hb_netns(inst, st, hb)
  if inst.netns then inst.netns:close() inst.netns = nil end
  if st.keep then st.keep:close() st.keep = nil end
  if st.beat then st.beat:close() st.beat = nil end
  st.netns, st.netns_error, st.via = nil, nil, nil
  if hb.kind ~= "http" and hb.kind ~= "tcp" then return end
  -- a connection the server keeps between probes (mw.probe.get): one a start, closed with it
  if hb.kind == "http" and self.hb_keep then st.keep = net.keep() end
  if self.hb_via == "netns" then
    local ns, err = probe.open_netns(inst.pid, inst.id)
    if ns then
      inst.netns, st.netns, st.via = ns, ns, "netns"
      return
    end
    st.netns_error = tostring(err)
    if not inst.netns_warned then       -- once an instance, not at every restart
      inst.netns_warned = true
      log.warn(inst.key, "heartbeat_via", "cannot probe inside the container's network namespace (" .. st.netns_error
        .. ")" .. (st.host_port and "; using its published port" or ""), { via = "published" })
    end
  end
  st.via = "published"
end

-- Closes the heartbeat's kept connection (mw.probe.get), if any: before its state is replaced.
function Sup:drop_kept(inst)
  if inst.hb and inst.hb.keep then inst.hb.keep:close() inst.hb.keep = nil end
  if inst.hb and inst.hb.beat then inst.hb.beat:close() inst.hb.beat = nil end
end

function Sup:stop_heartbeat(inst)
  if inst.netns then inst.netns:close() inst.netns = nil end
  self:drop_kept(inst)
  if inst.hb then inst.hb.gen, inst.hb.netns = nil, nil end
  if inst.pidw and inst.handling then inst.pidw:close() inst.pidw = nil end
  if inst.hb and inst.hb.task and inst.hb.task ~= core.current() then core.cancel(inst.hb.task) end
  for p in pairs(inst.probes) do
    if not p.done then core.cancel(p.task) end
  end
  inst.probes = {}
end

-- A good answer to the probe sent at `sent`, judged at `at` (mw's clock; now when not given).
function Sup:good(inst, latency, sent, at)
  if self.on_beat then self.on_beat(inst.key, true, latency) end     -- metrics
  inst.hb.misses = 0
  inst.hb.held = nil
  inst.hb_restart = nil
  inst.hb.latency = latency
  local now = at or core.now()
  inst.hb.last_ok = core.time() - (core.now() - now)
  -- the reference for the failure deadline: the probe's send time, or for an answer that took
  -- longer than an interval the last tick before it came (a slow answer is still an answer)
  local hb = inst.def.heartbeat
  local ref = sent or now
  if hb then ref = math.max(ref, grid_after(now, hb.interval, inst.hb.slot or 0) - hb.interval) end
  inst.hb.last_ok_at = math.max(inst.hb.last_ok_at or 0, ref)
  if inst.state == "starting" or inst.state == "unhealthy" then
    local was = inst.state
    transition(self, inst, "answered", "healthy")
    if was == "starting" then
      log.info(inst.key, "healthy", string.format("healthy (heartbeat %s)", log.dur(latency)), { latency = latency })
    end
  end
end

-- A probe that failed (latency given) or is still out at a tick (none).
function Sup:miss(inst, why, started, latency)
  if self.on_beat then self.on_beat(inst.key, false, latency) end
  if latency then inst.failed_probes = (inst.failed_probes or 0) + 1 end
  inst.hb.misses = inst.hb.misses + 1
  inst.missed = (inst.missed or 0) + 1
  inst.hb.last_error = why
  if inst.state == "healthy" then transition(self, inst, "missed", "unhealthy") end
  self:hb_check(inst, started)
end

-- When the instance fails if no good answer comes first (nil when it does not run).
function Sup:hb_deadline(inst, started)
  local hb = inst.def.heartbeat
  if not hb then return nil end
  local window = hb.misses * hb.interval
  if inst.state == "starting" then return started + math.max(hb.grace, window) end
  if inst.state == "healthy" or inst.state == "unhealthy" then
    -- at least one probe after the last good one must have had its chance (misses = 1)
    local ref = inst.hb.last_ok_at or started
    return math.max(ref + window, ref + hb.interval + math.min(hb.timeout, hb.interval))
  end
  return nil
end

-- Whether the stack is coming up: an instance is in its first create and start, or the last
-- of those ended less than `window` seconds ago. Read from the instances rather than counted,
-- so a bring-up cancelled mid-start (its instance failed, or was retired) stops counting at
-- once: its state leaves "waiting".
function Sup:coming_up(window)
  if self.first_start_end and core.now() - self.first_start_end < window then return true end
  for _, o in pairs(self.comps) do
    if o.first_start and o.state == "waiting" then return true end
  end
  return false
end

-- Instances restarted for a heartbeat failure that are not yet healthy again (backoff waits
-- do not count: they load nothing).
function Sup:hb_restarts(except)
  local n = 0
  for _, o in pairs(self.comps) do
    if o ~= except and o.hb_restart and (o.state == "restarting" or o.state == "starting") then n = n + 1 end
  end
  return n
end

-- Fails the instance when its deadline has passed, unless HB_RESTARTS others are already being
-- restarted for heartbeat failures, or the stack is coming up (a first create and start under
-- way, or ended less than misses x interval ago): many instances going silent together is
-- more likely the host or the engine overloaded (a cold start of 30 took both cores here)
-- than each of them hung, and restarting them adds load. Held, it keeps being probed; an
-- answer clears it, and once the hold ends the failure goes through at the next tick.
function Sup:hb_check(inst, started)
  local due = self:hb_deadline(inst, started)
  if not due or core.now() < due - EARLY or inst.handling then return end
  local hb = inst.def.heartbeat
  local why = tostring(inst.hb.last_error or "no answer")
  local busy = self:hb_restarts(inst)
  local held
  if busy >= HB_RESTARTS then
    held = string.format("while %d others restart after heartbeat failures", busy)
  elseif inst.state ~= "starting" and self:coming_up(hb.misses * hb.interval) then
    -- the stack is coming up: the engine creating and starting containers can take every
    -- core (30 at once here), and a silence that overlaps it is more likely that than a hang
    held = "while the stack comes up"
  end
  if held then
    if not inst.hb.held then
      inst.hb.held = true
      log.warn(inst.key, "held", string.format("no good heartbeat (%s); restart held %s", why, held), { reason = "heartbeat" })
    end
    return
  end
  inst.hb.held = nil
  if inst.state == "starting" then
    self:failure(inst, "heartbeat", { message = "not healthy within " .. log.dur(math.max(hb.grace, hb.misses * hb.interval))
      .. ": " .. why })
  else
    self:failure(inst, "heartbeat", { message = string.format("no good heartbeat for %s (%d missed): %s",
      log.dur(hb.misses * hb.interval), inst.hb.misses, why) })
  end
end

-- Probes a candidate container (main process pid) until it answers its heartbeat, or the
-- deadline passes; on the path the instance's own heartbeats take.
function Sup:wait_healthy(inst, id, port, deadline, pid)
  local hb = inst.def.heartbeat
  local cand = { name = inst.name, id = id, hb = { host_port = port }, def = inst.def }
  local ns
  if self.hb_via == "netns" and (hb.kind == "http" or hb.kind == "tcp") then
    local err
    ns, err = probe.open_netns(pid, id)
    cand.hb.netns, cand.hb.netns_error = ns, ns == nil and tostring(err) or nil
  end
  local why
  while core.now() < deadline do
    local ok, w = PROBES[hb.kind](self, cand, hb)
    if ok then
      if ns then ns:close() end
      return true
    end
    why = w
    core.sleep(math.min(hb.interval, 0.2))
  end
  if ns then ns:close() end
  return nil, why or "no answer"
end

return Sup
