-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other. This one: reload (a new stack applied), scale
-- changes, rolling replacement of changed definitions, and retiring instances.
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
  local ok, d = pcall(policy.describe, p)
  return ok and d or tostring(p)
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
  local old = self.stack
  self.stack = new
  local notes = { policy = {}, heartbeat = {}, added = {}, removed = {}, scaled = {}, checking = {} }
  for _, name in ipairs(old.order) do
    local g = self.groups[name]
    if g and not new.components[name] then
      notes.removed[#notes.removed + 1] = name
      self:retire(instances(g))
      self.groups[name] = nil
    end
  end
  for _, name in ipairs(new.order) do
    local def = new.components[name]
    local g = self.groups[name]
    if not g then
      g = self:_group(name, def)
      notes.added[#notes.added + 1] = name
      for _, c in ipairs(instances(g)) do
        c.runner = self:spawn(c.key .. "-up", function() self:bring_up(c, nil) end)
      end
    else
      local olddef = g.def
      g.def = def
      if describe_policy(olddef.restart) ~= describe_policy(def.restart) then notes.policy[#notes.policy + 1] = name end
      local hb_changed = not same(hb_settings(olddef.heartbeat), hb_settings(def.heartbeat))
      if hb_changed then notes.heartbeat[#notes.heartbeat + 1] = name end
      for _, c in ipairs(instances(g)) do
        c.def = def
        if c.pending then self:repolicy(c) end
        if hb_changed and c.id and is_up(c) then
          if def.heartbeat and c.state == "running" then transition(self, c, "reloaded", "starting") end
          if not def.heartbeat and c.state ~= "running" then transition(self, c, "reloaded", "running") end
          local port = c.hb and c.hb.host_port
          c.hb = { misses = 0, host_port = port }
          self:start_heartbeat(c)
        end
      end
      if def.autoscale then
        local n = math.max(def.autoscale.min, math.min(def.autoscale.max, g.desired))
        if n ~= g.desired then self:scale(g, n) end
      elseif (def.scale or 1) ~= g.desired then
        notes.scaled[#notes.scaled + 1] = string.format("%s %d -> %d", name, g.desired, def.scale or 1)
        self:scale(g, def.scale or 1)
      end
      notes.checking[#notes.checking + 1] = g
    end
  end
  -- which definitions changed is known once images are resolved: in the background
  self:spawn("reconcile", function()
    for _, g in ipairs(notes.checking) do
      if self.groups[g.name] == g and not g.rolling then
        local first = instances(g)[1]
        local img = first and self:image_for(first)
        if img then
          local _, hash = spec.container(self.stack, g.def, img, 1)
          local stale = {}
          for _, c in ipairs(instances(g)) do
            if c.id and c.hash ~= hash and c.state ~= "gone" then stale[#stale + 1] = c end
          end
          if #stale > 0 then
            g.rolling = true
            self:spawn(g.name .. "-roll", function() self:roll(g, stale, img) end)
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
function Sup:scale(g, n)
  local was = g.desired
  g.desired = n
  for i = was + 1, n do
    if not g.instances[i] then
      local c = self:_instance(g, i)
      c.runner = self:spawn(c.key .. "-up", function() self:bring_up(c, nil) end)
    end
  end
  local list, gone = instances(g), {}
  for k = #list, 1, -1 do
    if list[k].index > n then gone[#gone + 1] = list[k] end
  end
  if #gone > 0 then self:retire(gone, "scaled down") end
  self:changed()
end

-- Replaces the stale instances of a group one at a time (rollout.parallel at once): each new
-- one must be healthy before the next goes; one that never is stops the roll, old ones serving.
function Sup:roll(g, stale, img)
  local ro = g.def.rollout or {}
  local parallel = ro.parallel or 1
  local t0 = core.now()
  local k, failed = 1, nil
  while k <= #stale and not failed do
    local batch = {}
    for j = k, math.min(#stale, k + parallel - 1) do
      local c = stale[j]
      batch[#batch + 1] = self:spawn(c.key .. "-replace", function()
        c.replacing = true
        local ok, why = self:replace(c, img)
        c.replacing = nil
        if not ok then failed = failed or string.format("%s: %s", c.key, tostring(why)) end
      end)
    end
    for _, t in ipairs(batch) do core.join(t) end
    k = k + parallel
  end
  g.rolling = nil
  if #stale > 1 then
    if failed then
      log.error(g.name, "roll_stopped", string.format("rolling replacement stopped (%s); %d old instance%s keep serving",
        failed, #stale - k + parallel, (#stale - k + parallel) == 1 and "" or "s"))
    else
      log.info(g.name, "rolled", string.format("rolled %d instances in %s", #stale, log.dur(core.now() - t0)))
    end
  end
end

-- Instances no longer wanted (their component left the stack, or the scale went down): stop
-- supervising them at once, then stop and remove their containers one after the other, in the
-- order given.
function Sup:retire(list, why)
  for _, c in ipairs(list) do
    self:stop_heartbeat(c)
    if c.pidw then c.pidw:close() c.pidw = nil end
    if c.runner and c.runner ~= core.current() then core.cancel(c.runner) end
    c.runner, c.pending = nil, nil
    transition(self, c, "retire", "gone")
    self.comps[c.key] = nil
    if c.group.instances[c.index] == c then c.group.instances[c.index] = nil end
  end
  self:spawn("retire", function()
    for _, c in ipairs(list) do
      if c.id then
        c.quiet = c.id
        self.engine:stop(c.id, math.ceil(c.def.stop_grace or 10))
        self.engine:remove(c.id, { force = true })
        log.info(c.key, "removed", "removed (" .. (why or "no longer in the stack") .. ")")
      end
    end
  end)
end

return Sup
