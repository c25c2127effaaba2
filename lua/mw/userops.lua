-- What the user asks of a running mw (`mw stop`, `mw start`, `mw restart`, `mw down`, the API and
-- the dashboard): stop components gracefully, dependents first, and keep them stopped; bring them
-- back in dependency order; restart them, a given-up one with its failure history cleared.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor; `inst` is an instance (mw.instance.new lists its fields).
local core = require "mw.core"
local log = require "mw.log"
local instance = require "mw.instance"

local instances, transition, is_up = instance.instances, instance.transition, instance.is_up

local Sup = {}

local SETTLE_TIMEOUT = 120     -- seconds a start or restart is waited for before the API answers

-- The component names of a request: every component when none is named -> list | nil, unknown.
function Sup:user_names(names)
  if not names or #names == 0 then
    local all = {}
    for _, name in ipairs(self.stack.order) do if self.groups[name] then all[#all + 1] = name end end
    return all
  end
  for _, name in ipairs(names) do
    if not self.groups[name] then return nil, name end
  end
  return names
end

-- Runs fn(name) for each named component, in parallel where the graph allows: a component
-- waits for every named component that `first(name, other)` says goes before it.
function Sup:in_order(names, first, fn)
  local done, set = {}, {}
  for _, name in ipairs(names) do set[name] = true end
  -- a cond lets one task wait: one each, all nudged when any finishes
  local conds, tasks = {}, {}
  for _, name in ipairs(names) do conds[name] = core.cond() end
  for _, name in ipairs(names) do
    tasks[#tasks + 1] = core.spawn(function()
      while true do
        local ready = true
        for other in pairs(set) do
          if other ~= name and first(name, other) and not done[other] then ready = false break end
        end
        if ready then break end
        conds[name]:wait(1)
      end
      local ok, err = pcall(fn, name)
      if not ok then log.warn(name, "user", "failed: " .. tostring(err)) end
      done[name] = true
      for _, c in pairs(conds) do c:notify() end
    end, "user-" .. name)
  end
  for _, t in ipairs(tasks) do core.join(t) end
  for _, c in pairs(conds) do c:close() end
end

-- Whether component a depends on b, directly or not.
function Sup:depends(a, b, seen)
  local group = self.groups[a]
  if not group then return false end
  seen = seen or {}
  if seen[a] then return false end
  seen[a] = true
  for dep in pairs(group.def.depends_on or {}) do
    if dep == b or self:depends(dep, b, seen) then return true end
  end
  return false
end

-- Stops one instance for the user: no heartbeat, no recovery pending, its exit is mw's own.
function Sup:halt(inst, restarting)
  self:stop_heartbeat(inst)
  if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) end
  inst.runner, inst.pending = nil, nil
  inst.handling = restarting or false
  inst.up_since = nil
  if restarting then
    transition(self, inst, "user_restart", "restarting")
  else
    transition(self, inst, "user_stop", "user_stopped")
  end
  if inst.id then
    inst.quiet = inst.id
    local ok, err = self.engine:stop(inst.id, math.ceil(inst.def.stop_grace or 10))
    if not ok then log.warn(inst.key, "user_stop", "cannot stop its container: " .. tostring(err)) end
  end
end

-- Runs fn(inst) for each instance of the listed components that pick(inst) accepts (asked when
-- its component's turn comes), a component after the listed ones that depend on it, one task
-- per instance (named <key>-<what>), joined before the components it depends on go.
function Sup:for_instances(list, pick, what, fn)
  self:in_order(list, function(name, other) return self:depends(other, name) end, function(name)
    local tasks = {}
    for _, inst in ipairs(instances(self.groups[name])) do
      if pick(inst) then
        tasks[#tasks + 1] = core.spawn(function() fn(inst) end, inst.key .. "-" .. what)
      end
    end
    for _, t in ipairs(tasks) do core.join(t) end
  end)
end

-- Stops the named components (all when none), each after the named ones that depend on it,
-- each with its stop_grace; they stay stopped. -> the components | nil, unknown component
function Sup:user_stop(names)
  local list, unknown = self:user_names(names)
  if not list then return nil, unknown end
  self:for_instances(list, function(inst) return inst.state ~= "user_stopped" and inst.state ~= "gone" end,
    "user-stop", function(inst)
      log.info(inst.key, "user_stop", "stopping (asked by the user)")
      self:halt(inst, false)
      log.info(inst.key, "user_stopped", "stopped by the user; nothing restarts it until mw start")
    end)
  self:stop_holders(list)
  return list
end

-- Stops the network holders (mw.holder) of the listed components' stopped instances, and of
-- the components the listed ones share a namespace with (network_mode "service:x"), that no
-- running instance shares: their published ports are released and
-- their addresses freed, as compose's stop does with a container's. mw start, or the next mw
-- run, starts a holder again before its container (Sup:ensure_holder).
function Sup:stop_holders(list)
  local tasks, names = {}, {}
  for _, name in ipairs(list) do
    names[#names + 1] = name
    -- a sharer stopped: the holder it shared may now be free
    local of = (self.groups[name].def.network_mode or ""):match("^service:(.+)$")
    if of and self.groups[of] then names[#names + 1] = of end
  end
  for _, name in ipairs(names) do
    for _, inst in ipairs(instances(self.groups[name])) do
      local h = inst.holder
      if inst.state == "user_stopped" and h and h.running and not self:holder_shared(inst) then
        h.running = false          -- its die event is expected (Sup:holder_event)
        tasks[#tasks + 1] = core.spawn(function()
          local ok, err = self.engine:stop(h.id, 1)
          if ok then log.info(inst.key, "holder", "stopped its network holder " .. h.name)
          else log.warn(inst.key, "holder", "cannot stop its network holder " .. h.name .. ": " .. tostring(err)) end
        end, inst.key .. "-holder-stop")
      end
    end
  end
  for _, t in ipairs(tasks) do core.join(t) end
  if #tasks > 0 then self:changed() end      -- mw status shows the holders stopped
end

-- Whether an instance that runs shares inst's holder (network_mode = "service:<inst's component>").
function Sup:holder_shared(inst)
  for _, other in ipairs(self:sharers(inst)) do
    if other.state ~= "user_stopped" and other.state ~= "gone" and other.state ~= "stopped" and other.id then return true end
  end
  return false
end

-- A component the user brings back has its policy start afresh.
local function fresh(inst)
  inst.history = {}
  inst.failures = 0
  inst.hb_restart = nil
end

-- Waits until each instance of the named components is up, or failed again, or was stopped.
function Sup:await_settled(list, timeout)
  local deadline = core.now() + (timeout or SETTLE_TIMEOUT)
  self:wait_until(function()
    if core.now() > deadline then return true end
    for _, name in ipairs(list) do
      for _, inst in ipairs(instances(self.groups[name])) do
        local s = inst.state
        if not (is_up(inst) or s == "backoff" or s == "gave_up" or s == "stopped" or s == "user_stopped" or s == "gone") then
          return false
        end
      end
    end
    return true
  end)
end

-- The named components with every component they depend on (they must run first).
function Sup:with_dependencies(list)
  local set, out = {}, {}
  for _, name in ipairs(list) do set[name] = true end
  for _, name in ipairs(self.stack.order) do
    if not set[name] then
      for want in pairs(set) do
        if self:depends(want, name) then set[name] = true break end
      end
    end
  end
  for _, name in ipairs(self.stack.order) do if set[name] and self.groups[name] then out[#out + 1] = name end end
  return out
end

-- Starts the named components (all when none) that are stopped, given up or stopped by the
-- user, and what they depend on, in dependency order; waits until they are up or failed.
-- -> the components acted on | nil, unknown component
function Sup:user_start(names)
  local list, unknown = self:user_names(names)
  if not list then return nil, unknown end
  list = self:with_dependencies(list)
  for _, name in ipairs(list) do
    for _, inst in ipairs(instances(self.groups[name])) do
      local s = inst.state
      if s == "user_stopped" or s == "gave_up" or s == "stopped" then
        fresh(inst)
        inst.handling = false
        transition(self, inst, "user_start", "waiting")
        log.info(inst.key, "user_start", "starting (asked by the user)")
        inst.runner = self:spawn(inst.key .. "-up", function()
          self:wait_deps(inst)
          if self.stopping or inst.state ~= "waiting" then return end
          local by = self:actual()
          local ok, err, info = self:ensure(inst, by and by[inst.name] and by[inst.name][inst.index])
          if inst.runner == core.current() then inst.runner = nil end
          if not ok then return self:start_failed(inst, err, info) end
          self:settle(inst)
        end)
      end
    end
  end
  self:await_settled(list)
  return list
end

-- Restarts the named components (all when none): each stopped gracefully after the named ones
-- that depend on it, then started again once its dependencies are up; a given-up one's
-- failure history is cleared so its policy starts afresh. -> the components | nil, unknown component
function Sup:user_restart(names)
  local list, unknown = self:user_names(names)
  if not list then return nil, unknown end
  self:for_instances(list, function(inst) return inst.state ~= "gone" and inst.state ~= "pending" end,
    "user-stop", function(inst)
      if inst.state == "gave_up" or inst.state == "stopped" or inst.state == "user_stopped" then fresh(inst) end
      log.info(inst.key, "user_restart", "restarting (asked by the user)")
      self:halt(inst, true)
    end)
  for _, name in ipairs(list) do
    for _, inst in ipairs(instances(self.groups[name])) do
      if inst.state == "restarting" then
        inst.runner = self:spawn(inst.key .. "-restart", function()
          self:wait_deps(inst)
          if self.stopping or inst.state ~= "restarting" then return end
          inst.restarts = inst.restarts + 1
          inst.dead_id = inst.id           -- stopped just now: no inspect needed
          local ok, err, info = self:restart_container(inst)
          if inst.runner == core.current() then inst.runner = nil end
          if not ok then return self:start_failed(inst, err, info) end
          self:settle(inst)
        end)
      end
    end
  end
  self:await_settled(list)
  return list
end

-- The state of each listed component's instances: { { name = key, state = state } ... }.
function Sup:user_states(list)
  local out = {}
  for _, name in ipairs(list) do
    for _, inst in ipairs(instances(self.groups[name])) do
      out[#out + 1] = { name = inst.key, state = inst.state }
    end
  end
  return out
end

return Sup
