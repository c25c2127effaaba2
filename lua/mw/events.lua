-- The supervisor's view of the engine's event streams: what a container's death, removal or
-- disconnect means, and the engine going away and coming back.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new) and `group` a component's instances.
local core = require "mw.core"
local log = require "mw.log"
local owner = require "mw.owner"
local instance = require "mw.instance"

local is_up = instance.is_up

local Sup = {}

-- ---------------------------------------------------------------------------------------------
-- the engine's events

function Sup:by_id(id)
  for _, inst in pairs(self.comps) do
    if inst.id == id then return inst end
  end
  return nil
end

-- Whether a container that died is being removed. A forced remove (`mw kill`, `docker rm -f`)
-- kills the container, so its die event comes before the destroy event; the engine marks the
-- removal before the kill (moby daemon/delete.go: ContainerRm calls SetRemovalInProgress, then
-- cleanupContainer kills), and inspect then says "removing" (State.StateString puts it before
-- "dead" and "exited"), or finds nothing once the removal is done. Such a death is the failure
-- `removed`, not an exit to restart in place: that start would fail with "marked for removal".
function Sup:being_removed(id)
  local info, _, code = self.engine:inspect(id)
  if not info then return code == "notfound" end
  return (info.State or {}).Status == "removing"
end

-- The exit code of a die event that says 0 (or nothing), read again from the container's
-- state. moby 20.10 (daemon/monitor.go handleContainerExit) writes the die event's exitCode from
-- its containerd DeleteTask call and the container's state from the exit event: when that
-- delete fails (seen in CI: a restart in place racing containerd's clean-up of the previous
-- run's shim), the event says 0 while the state keeps the real code. A job would complete and
-- on_failure would not restart on an exit 3; 0 is rare for a crash, so the inspect costs a
-- recovery nothing in the common case.
function Sup:confirm_exit(inst, id, code)
  local info = self.engine:inspect(id)
  local st = info and info.State
  if st and not st.Running and type(st.ExitCode) == "number" then
    if st.ExitCode ~= (code or 0) then
      log.info(inst.key, "exit_code", string.format("the engine's die event said exit code %s, the container's state %d; "
        .. "using the state's", tostring(code), st.ExitCode), { container = id })
    end
    return st.ExitCode
  end
  return code
end

function Sup:on_container_event(ev)
  local actor = ev.Actor or {}
  local attrs = actor.Attributes or {}
  local action = ev.Action or ev.status
  if attrs["mw.holder"] then     -- a network holder's (mw.holder)
    local held = self.comps[attrs["mw.holder"]]
    if held then self:holder_event(held, actor.ID, action) end
    return
  end
  local comp, idx = attrs["mw.component"] or "", tonumber(attrs["mw.instance"]) or 1
  local inst = self.comps[idx == 1 and comp or (comp .. "-" .. idx)]
  if inst and inst.standby and inst.standby.id == actor.ID then self:standby_event(inst, actor.ID, action) return end
  if not inst or actor.ID ~= inst.id or inst.quiet == actor.ID then return end
  if action == "oom" then
    inst.oom = true
  elseif action == "kill" then
    -- the engine signalled it (docker kill/stop/rm -f, or mw kill): its die may be a removal
    inst.killed = actor.ID
  elseif action == "die" and inst.handling then
    -- mid-recovery (between our start and settle): remember it for settle()
    inst.died = { id = actor.ID, exit_code = tonumber(attrs.exitCode), oom = inst.oom }
  elseif action == "die" then
    local code = tonumber(attrs.exitCode)
    -- Only a death the engine caused can be a removal: a forced remove kills through
    -- killWithSignal, which logs the "kill" event while it holds the container's lock, and the
    -- exit handler that logs "die" takes that lock first (moby 20.10 daemon/kill.go,
    -- daemon/monitor.go), so on one stream "kill" comes first. A process that died on its own
    -- (crash, OOM, kill -9 from the host) skips the inspect: one round trip less between the
    -- exit and the restart (docs/internals.md, "The path from an exit to the start").
    if inst.killed == actor.ID and self:being_removed(actor.ID) then
      -- the inspect yielded: act only if nothing else (another stream, the pid watcher) did
      if inst.id == actor.ID and not inst.handling then self:failure(inst, "removed", {}) end
      return
    end
    if inst.id ~= actor.ID or inst.handling then return end
    if code == 0 or not code then
      code = self:confirm_exit(inst, actor.ID, code)
      if inst.id ~= actor.ID or inst.handling then return end     -- the inspect yielded
    end
    inst.dead_id = actor.ID      -- known to be stopped: a restart in place needs no inspect first
    if inst.oom then self:failure(inst, "oom", { exit_code = code })
    else self:failure(inst, "exited", { exit_code = code }) end
  elseif action == "destroy" then
    if inst.handling then
      inst.gone = true
    else
      self:failure(inst, "removed", {})
    end
  end
end

function Sup:on_network_event(ev)
  if (ev.Action or ev.status) ~= "disconnect" then return end
  local attrs = (ev.Actor or {}).Attributes or {}
  local inst = self:by_id(attrs.container)
  if not inst then
    -- a held component's holder (mw.holder) left the network: the component's failure, as below
    for _, held in pairs(self.comps) do
      local h = held.holder
      if h and h.id == attrs.container and h.running and not (self.quiet_holders or {})[h.id] then
        inst = held
        break
      end
    end
  end
  if not inst or inst.quiet == inst.id or inst.handling then return end
  -- a container that dies or is removed leaves its networks too: that is its die or destroy
  -- event's failure, not a disconnect (this event may come first: another stream)
  local id = inst.id
  if inst.down and inst.down.id == id then return end
  -- a held one's endpoint is its holder's: a holder that died is its die event's failure
  local info = self.engine:inspect(inst.holder and inst.holder.id or id)
  local status = info and (info.State or {}).Status
  if status ~= "running" and status ~= "paused" then return end
  -- back on the network by now (a promotion gives its alias by disconnect + connect)
  local nets = info.NetworkSettings and info.NetworkSettings.Networks
  if type(nets) == "table" and self.network and nets[self.network.name] then return end
  if inst.id ~= id or inst.handling then return end
  self:failure(inst, "disconnected", {})
end

-- One reader per stream; on loss it reconnects from the last event seen and re-lists.
function Sup:watch(kind, filters, handler)
  return self:spawn("events-" .. kind, function()
    local delay = 0.1
    local ev, err
    while not self.stopping do
      if not ev then
        ev, err = self.engine:events { filters = filters, since = self.events_since }
      else
        local ok
        ok, err = ev:reconnect()
        if not ok then ev:close() ev = nil end
      end
      if ev and not err then
        if delay > 0.1 then
          log.info(nil, "engine", "event stream back; checking every component")
          self:resync()
        end
        delay = 0.1
        self.streams = self.streams or {}
        self.streams[kind] = ev
        while true do
          local event, rerr = ev:next()
          if not event then err = rerr break end
          handler(self, event)
        end
      end
      if self.stopping then break end
      log.warn(nil, "engine", string.format("lost the engine's %s event stream (%s); retrying in %s",
        kind, tostring(err), log.dur(delay)))
      if not self.engine:ping() then self:engine_away("event stream: " .. tostring(err)) end
      core.sleep(delay)
      delay = math.min(delay * 2, 5)
    end
    if ev then ev:close() end
  end)
end

-- The engine stopped answering: say so once, then ping it with backoff until it answers.
function Sup:engine_away(why)
  if self.away then return end
  self.away = true
  log.warn(nil, "engine_away", "the engine is away (" .. tostring(why) .. "); waiting for it")
  self:spawn("engine-wait", function()
    local delay, t0 = 0.1, core.now()
    while not self.stopping and not self.engine:ping() do
      core.sleep(delay)
      delay = math.min(delay * 2, 5)
    end
    self.away = false
    if not self.stopping then
      log.info(nil, "engine_back", string.format("the engine answers again (away %s)", log.dur(core.now() - t0)))
    end
    self:changed()
  end)
end

-- After a gap in the events: any component whose container is gone or not running has failed.
function Sup:resync()
  local list, err
  local delay = 0.1
  while not self.stopping do
    -- the containers and the network holders (mw.holder)
    list, err = self.engine:list { label = owner.filter(self.stack.name) }
    if list then break end
    log.warn(nil, "engine", "cannot list containers (" .. tostring(err) .. "); retrying in " .. log.dur(delay))
    core.sleep(delay)
    delay = math.min(delay * 2, 5)
  end
  if not list then return end
  local by_id = {}
  for _, listed in ipairs(list) do by_id[listed.Id] = listed end
  for _, inst in pairs(self.comps) do
    local h = inst.holder
    local held = h and h.running and by_id[h.id]
    if h and h.running and (not held or held.State ~= "running") then
      -- its holder died or went in the gap: its container is cut off (Sup:holder_event)
      self:holder_event(inst, h.id, held and "die" or "destroy")
    end
    if inst.id and is_up(inst) and not inst.handling then
      local listed = by_id[inst.id]
      if not listed then
        self:failure(inst, "removed", {})
      elseif listed.State ~= "running" and listed.State ~= "paused" then
        self:failure(inst, "exited", { exit_code = tonumber((listed.Status or ""):match("%((%-?%d+)%)")) })
      end
    end
  end
end

return Sup
