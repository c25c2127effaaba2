-- The supervisor's reload: a new stack applied, scale changes, rolling replacement of changed
-- definitions, and retiring instances.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new) and `group` a component's instances.
local core = require "mw.core"
local spec = require "mw.spec"
local log = require "mw.log"
local policy = require "mw.policy"
local instance = require "mw.instance"

local instances, transition, is_up = instance.instances, instance.transition, instance.is_up

local Sup = {}

-- ---------------------------------------------------------------------------------------------
-- reload

local function describe_policy(p)
  if type(p) == "function" then return tostring(p) end
  local ok, text = pcall(policy.describe, p)
  return ok and text or tostring(p)
end

local function same(a, b)
  return spec.hash(a or {}) == spec.hash(b or {})
end

-- Heartbeat settings that only mw uses (the port is part of the container's definition).
local function hb_settings(hb)
  if not hb then return false end
  return { hb.kind, hb.path, hb.interval, hb.timeout, hb.misses, hb.grace, hb.exec, tostring(hb.check) }
end

-- Applies a newly loaded stack: policies and heartbeat settings at once, pending delays
-- recomputed; scale changes add or retire instances; changed components are replaced (rolled
-- one instance at a time); added ones start, removed ones go. Returns a one-line summary.
function Sup:apply(new)
  self.pulled = {}      -- pull = "always" and build.pull act again for what this reload creates
  local old = self.stack
  self.stack = new
  local notes = { policy = {}, heartbeat = {}, added = {}, removed = {}, scaled = {}, checking = {} }
  for _, name in ipairs(old.order) do
    local group = self.groups[name]
    if group and not new.components[name] then
      notes.removed[#notes.removed + 1] = name
      self:retire(instances(group))
      self.groups[name] = nil
    end
  end
  for _, name in ipairs(new.order) do
    local def = new.components[name]
    local group = self.groups[name]
    if not group then
      group = self:_group(name, def)
      notes.added[#notes.added + 1] = name
      for _, inst in ipairs(instances(group)) do
        inst.runner = self:spawn(inst.key .. "-up", function() self:bring_up(inst, nil) end)
      end
    else
      local olddef = group.def
      group.def = def
      if describe_policy(olddef.restart) ~= describe_policy(def.restart) then notes.policy[#notes.policy + 1] = name end
      local hb_changed = not same(hb_settings(olddef.heartbeat), hb_settings(def.heartbeat))
      if hb_changed then notes.heartbeat[#notes.heartbeat + 1] = name end
      for _, inst in ipairs(instances(group)) do
        inst.def = def
        if inst.pending then self:repolicy(inst) end
        if inst.id and is_up(inst) then self:standby_sync(inst) end
        if hb_changed and inst.id and is_up(inst) then
          if def.heartbeat and inst.state == "running" then transition(self, inst, "reloaded", "starting") end
          if not def.heartbeat and inst.state ~= "running" then transition(self, inst, "reloaded", "running") end
          local port = inst.hb and inst.hb.host_port
          self:stop_heartbeat(inst)         -- the old state's task, probes and beat end with it
          inst.hb = { misses = 0, host_port = port }
          self:start_heartbeat(inst)
        end
      end
      if def.autoscale then
        local n = math.max(def.autoscale.min, math.min(def.autoscale.max, group.desired))
        if n ~= group.desired then self:scale(group, n) end
      elseif (def.scale or 1) ~= group.desired then
        notes.scaled[#notes.scaled + 1] = string.format("%s %d -> %d", name, group.desired, def.scale or 1)
        self:scale(group, def.scale or 1)
      end
      notes.checking[#notes.checking + 1] = group
    end
  end
  -- which definitions changed is known once images are resolved: in the background
  self:spawn("reconcile", function()
    for _, group in ipairs(notes.checking) do
      if self.groups[group.name] == group and not group.rolling then
        local first = instances(group)[1]
        local img = first and self:image_for(first)
        if img then
          local _, hash = spec.container(self.stack, group.def, img, 1, nil, self.hb_via)
          local stale = {}
          for _, inst in ipairs(instances(group)) do
            if inst.id and inst.hash ~= hash and inst.state ~= "gone" and inst.state ~= "user_stopped" then stale[#stale + 1] = inst end
          end
          if #stale > 0 then
            group.rolling = true
            self:spawn(group.name .. "-roll", function() self:roll(group, stale, img) end)
          end
        end
      end
    end
  end)
  local parts = {}
  local function add(label, list)
    if #list > 0 then parts[#parts + 1] = label .. " " .. table.concat(list, ", ") end
  end
  add("new policy for", notes.policy)
  add("new heartbeat for", notes.heartbeat)
  add("scaled", notes.scaled)
  add("added", notes.added)
  add("removed", notes.removed)
  if #parts == 0 then parts[1] = "no policy, heartbeat, scale or component changed" end
  if self.autoscale_wake then self.autoscale_wake:notify() end     -- autoscale settings may be new
  return table.concat(parts, "; ") .. "; changed definitions are replaced"
end

-- Sets a group's scale: new instances start, the highest-numbered go first.
function Sup:scale(group, n)
  local was = group.desired
  group.desired = n
  for i = was + 1, n do
    if not group.instances[i] then
      local inst = self:_instance(group, i)
      inst.runner = self:spawn(inst.key .. "-up", function() self:bring_up(inst, nil) end)
    end
  end
  local list, gone = instances(group), {}
  for k = #list, 1, -1 do
    if list[k].index > n then gone[#gone + 1] = list[k] end
  end
  if #gone > 0 then self:retire(gone, "scaled down") end
  self:changed()
end

-- Replaces the stale instances of a group one at a time (rollout.parallel at once): each new
-- one must be healthy before the next goes; one that never is stops the roll, old ones serving.
function Sup:roll(group, stale, img)
  local ro = group.def.rollout or {}
  local parallel = ro.parallel or 1
  local t0 = core.now()
  local k, failed = 1, nil
  while k <= #stale and not failed do
    local batch = {}
    for j = k, math.min(#stale, k + parallel - 1) do
      local inst = stale[j]
      batch[#batch + 1] = self:spawn(inst.key .. "-replace", function()
        inst.replacing = true
        local ok, why = self:replace(inst, img)
        inst.replacing = nil
        if not ok then failed = failed or string.format("%s: %s", inst.key, tostring(why)) end
      end)
    end
    for _, t in ipairs(batch) do core.join(t) end
    k = k + parallel
  end
  group.rolling = nil
  if #stale > 1 then
    if failed then
      log.error(group.name, "roll_stopped", string.format("rolling replacement stopped (%s); %d old instance%s keep serving",
        failed, #stale - k + parallel, (#stale - k + parallel) == 1 and "" or "s"))
    else
      log.info(group.name, "rolled", string.format("rolled %d instances in %s", #stale, log.dur(core.now() - t0)))
    end
  end
end

-- Instances no longer wanted (their component left the stack, or the scale went down): stop
-- supervising them at once, then stop and remove their containers one after the other, in the
-- order given.
function Sup:retire(list, why)
  for _, inst in ipairs(list) do
    self:stop_heartbeat(inst)
    if inst.pidw then inst.pidw:close() inst.pidw = nil end
    if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) end
    inst.runner, inst.pending = nil, nil
    if inst.standby or inst.standby_task then
      self:spawn(inst.key .. "-standby-retire", function() self:drop_standby(inst) end)
    end
    transition(self, inst, "retire", "gone")
    self.comps[inst.key] = nil
    if inst.group.instances[inst.index] == inst then inst.group.instances[inst.index] = nil end
  end
  self:spawn("retire", function()
    for _, inst in ipairs(list) do
      if inst.id then
        inst.quiet = inst.id
        self.engine:stop(inst.id, math.ceil(inst.def.stop_grace or 10))
        self.engine:remove(inst.id, { force = true })
        log.info(inst.key, "removed", "removed (" .. (why or "no longer in the stack") .. ")")
      end
      self:drop_holder(inst, why or "no longer in the stack")
    end
  end)
end

return Sup
