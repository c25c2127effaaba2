-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other. This one: the engine's event streams, and what
-- a container's death, removal or disconnect means; the engine going away and coming back.
local core = require "mw.core"
local log = require "mw.log"
local owner = require "mw.owner"
local instance = require "mw.instance"

local is_up = instance.is_up

local Sup = {}

-- ---------------------------------------------------------------------------------------------
-- the engine's events

function Sup:by_id(id)
  for _, c in pairs(self.comps) do
    if c.id == id then return c end
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

function Sup:on_container_event(ev)
  local actor = ev.Actor or {}
  local attrs = actor.Attributes or {}
  local comp, idx = attrs["mw.component"] or "", tonumber(attrs["mw.instance"]) or 1
  local c = self.comps[idx == 1 and comp or (comp .. "-" .. idx)]
  if not c or actor.ID ~= c.id or c.quiet == actor.ID then return end
  local action = ev.Action or ev.status
  if action == "oom" then
    c.oom = true
  elseif action == "die" and c.handling then
    -- mid-recovery (between our start and settle): remember it for settle()
    c.died = { id = actor.ID, exit_code = tonumber(attrs.exitCode), oom = c.oom }
  elseif action == "die" then
    local code = tonumber(attrs.exitCode)
    if self:being_removed(actor.ID) then
      -- the inspect yielded: act only if nothing else (another stream, the pid watcher) did
      if c.id == actor.ID and not c.handling then self:failure(c, "removed", {}) end
      return
    end
    if c.id ~= actor.ID or c.handling then return end
    c.dead_id = actor.ID      -- known to be stopped: a restart in place needs no inspect first
    if c.oom then self:failure(c, "oom", { exit_code = code })
    else self:failure(c, "exited", { exit_code = code }) end
  elseif action == "destroy" then
    if c.handling then
      c.gone = true
    else
      self:failure(c, "removed", {})
    end
  end
end

function Sup:on_network_event(ev)
  if (ev.Action or ev.status) ~= "disconnect" then return end
  local attrs = (ev.Actor or {}).Attributes or {}
  local c = self:by_id(attrs.container)
  if not c or c.quiet == c.id or c.handling then return end
  -- a container that dies or is removed leaves its networks too: that is its die or destroy
  -- event's failure, not a disconnect (this event may come first: another stream)
  local id = c.id
  if c.down and c.down.id == id then return end
  local info = self.engine:inspect(id)
  local status = info and (info.State or {}).Status
  if status ~= "running" and status ~= "paused" then return end
  if c.id ~= id or c.handling then return end
  self:failure(c, "disconnected", {})
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
          local e, rerr = ev:next()
          if not e then err = rerr break end
          handler(self, e)
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
    list, err = self.engine:list { label = owner.filter(self.stack.name, "mw.config-hash") }
    if list then break end
    log.warn(nil, "engine", "cannot list containers (" .. tostring(err) .. "); retrying in " .. log.dur(delay))
    core.sleep(delay)
    delay = math.min(delay * 2, 5)
  end
  if not list then return end
  local by_id = {}
  for _, x in ipairs(list) do by_id[x.Id] = x end
  for _, c in pairs(self.comps) do
    if c.id and is_up(c) and not c.handling then
      local x = by_id[c.id]
      if not x then
        self:failure(c, "removed", {})
      elseif x.State ~= "running" and x.State ~= "paused" then
        self:failure(c, "exited", { exit_code = tonumber((x.Status or ""):match("%((%-?%d+)%)")) })
      end
    end
  end
end

return Sup
