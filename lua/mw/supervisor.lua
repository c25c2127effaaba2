-- The supervisor of one stack: brings components up in dependency order, watches them through
-- the engine's events and heartbeats, and handles each failure by the component's policy.
-- Sup is the one object; its methods live in a few files of one concern each, merged below:
-- mw.containers, mw.heartbeat, mw.events, mw.rollout and mw.autoscaler. This file holds
-- construction, dependency waits, failures and the policy, start and stop, and the snapshot.
-- Throughout, `inst` is an instance (mw.instance.new lists its fields and who writes them) and
-- `group` a component: { name, def, desired, instances, rolling, autoscaled, last_change }.
local core = require "mw.core"
local cjson = require "cjson"
local log = require "mw.log"
local policy = require "mw.policy"
local owner = require "mw.owner"
local instance = require "mw.instance"
local usercode = require "mw.usercode"
local probe = require "mw.probe"
local spec = require "mw.spec"

local instances, transition, is_up = instance.instances, instance.transition, instance.is_up
local shown, failure_text = usercode.shown, usercode.failure_text

local M = {}
local Sup = {}
Sup.__index = Sup

for _, part in ipairs { "mw.containers", "mw.heartbeat", "mw.events", "mw.rollout", "mw.autoscaler", "mw.standby",
                        "mw.userops", "mw.holder" } do
  for name, fn in pairs(require(part)) do Sup[name] = fn end
end

local POLICY_BUDGET = usercode.BUDGET
local MAX_CHANGES = 8       -- entries of a policy's third result looked at
local MAX_DELAY = 24 * 3600

-- ---------------------------------------------------------------------------------------------
-- construction and small helpers

-- The supervisor's own fields (an instance's are in mw.instance.new):
function M.new(o)
  local self = setmetatable({
    engine = o.engine,        -- the engine client (mw.docker), or a fake in tests
    stack = o.stack,          -- the loaded stack (mw.stack); a reload replaces it (Sup:apply)
    comps = {},               -- instance key -> instance, every instance not retired
    groups = {},              -- component name -> group { name, def, desired, instances, ... }
    images = {},              -- image tag -> ID, or "building" while one build runs (Sup:image_for)
    lookups = {},             -- image name -> the inspect-or-pull under way { id, err, done }
    waiters = {},             -- conds of tasks in Sup:wait_until, nudged by Sup:changed
    tasks = {},               -- every task spawned, cancelled by Sup:stop
    network = nil,            -- { id, name } of the stack's network (Sup:ensure_network)
    stopping = false,         -- set by Sup:stop: every task winds down
    on_change = o.on_change,  -- called on every state change (mw.run writes the status file)
    started_at = core.time(),
    -- how heartbeats reach components, for this process: "netns" | "published", and why not
    -- netns (mw.probe.choose_path); the published path publishes each heartbeat port
    hb_via = nil, hb_via_why = nil,
    arp_announce = false,     -- whether a started container's addresses are announced (Sup:announce)
    hb_keep = true,           -- whether HTTP heartbeats offer to keep their connection (mw.probe.get)
    hb_beat = true,           -- whether a healthy instance's HTTP probes run in C (Sup:run_beat)
    -- set later: volumes, extra (networks made), hb_dealt (heartbeat phases dealt),
    -- first_start_end, streams, events_since, away (the engine is away), autoscale_wake, and
    -- on_beat (mw.run's hook for each heartbeat)
  }, Sup)
  self.hb_via, self.hb_via_why = probe.choose_path(o.engine, o.heartbeat_via)
  self.arp_announce = probe.may_announce(o.engine)
  local keep_env = os.getenv("MW_HEARTBEAT_KEEPALIVE")
  self.hb_keep = not (keep_env == "off" or keep_env == "0")
  local beat_env = os.getenv("MW_HEARTBEAT_BEAT")
  self.hb_beat = not (beat_env == "off" or beat_env == "0")
  for _, name in ipairs(o.stack.order) do self:_group(name, o.stack.components[name]) end
  return self
end

-- A component is a group of instances: each has its own container, heartbeat, failure record
-- and backoff. Instance 1 is named like the component, instance i>1 "<component>-<i>".
function Sup:_group(name, def)
  local desired = def.scale or 1
  if def.autoscale then desired = math.max(def.autoscale.min, math.min(def.autoscale.max, desired)) end
  local group = { name = name, def = def, desired = desired, instances = {} }
  self.groups[name] = group
  for i = 1, group.desired do self:_instance(group, i) end
  return group
end

function Sup:_instance(group, i)
  local inst = instance.new(group, i)
  self.comps[inst.key] = inst
  group.instances[i] = inst
  return inst
end

function Sup:spawn(name, fn, ...)
  local t = core.spawn(fn, name, ...)
  self.tasks[t] = true
  return t
end

-- Everyone waiting for a state change (dependencies, status writers) gets a nudge.
function Sup:changed(inst)
  self.changes = (self.changes or 0) + 1    -- watchers of the snapshot (the API's sampler) compare it
  for w in pairs(self.waiters) do w:notify() end
  if self.on_change then self.on_change(inst) end
end

-- Waits until pred() holds, re-checking on every state change.
function Sup:wait_until(pred)
  if pred() then return true end
  local w = core.cond()
  self.waiters[w] = true
  while not pred() do
    if self.stopping then break end
    w:wait(5)
  end
  self.waiters[w] = nil
  w:close()
  return pred()
end

-- Has the dependency met the condition a dependent waits for?
local function condition_met(dep, cond)
  if cond == "healthy" then return dep.state == "healthy" or (dep.state == "running" and not dep.def.heartbeat) end
  if cond == "completed" then return dep.state == "completed" end
  return is_up(dep) or dep.state == "stopped" or dep.state == "completed"
end

function Sup:wait_deps(inst)
  return self:wait_until(function()
    if inst.state == "gone" then return true end
    for dep, cond in pairs(inst.def.depends_on) do
      local group = self.groups[dep]
      if not group then return false end
      for _, dep_inst in pairs(group.instances) do
        if not condition_met(dep_inst, cond) then return false end
      end
    end
    return true
  end)
end

-- Instances of the components that depend on inst's, directly or not, in start order.
function Sup:dependents(inst)
  local set = { [inst.name] = true }
  local out = {}
  for _, name in ipairs(self.stack.order) do
    local group = self.groups[name]
    if group and name ~= inst.name then
      for dep in pairs(group.def.depends_on) do
        if set[dep] then
          set[name] = true
          for _, dependent in ipairs(instances(group)) do out[#out + 1] = dependent end
          break
        end
      end
    end
  end
  return out
end

-- Every instance but inst, in start order.
function Sup:all_but(inst)
  local out = {}
  for _, name in ipairs(self.stack.order) do
    local group = self.groups[name]
    for _, other in ipairs(group and instances(group) or {}) do
      if other ~= inst then out[#out + 1] = other end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- failures and the policy

-- The failure record as the policy gets it: a copy, so whatever the policy does to it cannot
-- reach the supervisor's own (kept for a reload's repolicy and for log fields).
local function record_copy(r)
  local history = {}
  for i, h in ipairs(r.history) do history[i] = { time = h.time, reason = h.reason, uptime = h.uptime } end
  local out = {}
  for k, v in next, r do out[k] = v end
  out.history = history
  return out
end

-- Calls the component's policy under a budget; an error, an overrun or an answer that is not
-- plain data means the default. Answers are read with type(), rawget and next only.
function Sup:decide(inst, record)
  local restart_policy = inst.def.restart or policy.default
  local mine = record_copy(record)
  local ok, action, delay, changes = core.budget(function() return restart_policy(mine) end, POLICY_BUDGET)
  local why
  if not ok then
    why = failure_text(action)
  else
    -- a number past the longest wait is that wait (check_result refuses an infinite one)
    if type(delay) == "number" and delay > MAX_DELAY then delay = MAX_DELAY end
    local checked, seconds = policy.check_result(action, delay)     -- "500ms" is as good as 0.5
    if checked then
      delay = seconds
    elseif policy.actions[action] and type(delay) ~= "string" and type(delay) ~= "number" then
      why = "returned a bad delay " .. shown(delay)        -- a value no duration can be
    else
      why = (seconds:gsub("^policy ", ""))                 -- "restart policy failed (returned ...)"
    end
  end
  if why then
    log.warn(inst.key, "policy_error", "restart policy failed (" .. why .. "); the default policy applies")
    action, delay = policy.default(record)
  end
  delay = math.min(delay or 0, MAX_DELAY)
  if record.reason == "removed" and action == "restart" then action = "recreate" end
  -- a policy may change what the next container gets: a higher memory limit after an OOM kill
  if not why and action == "recreate" and type(changes) == "table" then
    local seen, k, v = 0, next(changes)
    while k ~= nil and seen < MAX_CHANGES do
      seen = seen + 1
      if k == "memory" and math.type(v) == "integer" and v >= 6 * 1024 * 1024 then
        inst.overrides = inst.overrides or {}
        inst.overrides.memory = v
        log.info(inst.key, "override", string.format("policy raised the memory limit to %d MiB", v // 1048576))
      elseif k == "cpus" and type(v) == "number" and v > 0 then
        inst.overrides = inst.overrides or {}
        inst.overrides.cpus = v
      else
        log.warn(inst.key, "policy_error", "policy asked to change " .. shown(k) .. "; only memory and cpus can change")
      end
      k, v = next(changes, k)
    end
  end
  return action, delay
end

local function describe(reason, info)
  if reason == "exited" then
    if info.exit_code then return "exited with code " .. info.exit_code end
    return tostring(info.message or "exited")
  elseif reason == "oom" then return "killed: out of memory"
  elseif reason == "removed" then return "container removed"
  elseif reason == "disconnected" then return "disconnected from the stack network"
  elseif reason == "heartbeat" then return tostring(info.message or "heartbeat failed")
  elseif reason == "start_failed" then return "cannot start: " .. tostring(info.message or "?")
  end
  return reason
end

-- How much failure history an instance keeps beyond the last 50: as much as the largest limit
-- in the stack needs (the largest restarts and the longest within), so a limit of 60 can trip
-- and a policy function that wraps another component's policy object sees enough.
function Sup:history_limit()
  local restarts, within
  for _, def in pairs(self.stack.components) do
    local l = policy.limit_of(def.restart)
    if l then
      restarts = math.max(restarts or 0, l.restarts)
      within = math.max(within or 0, l.within)
    end
  end
  return restarts and { restarts = restarts, within = within } or nil
end

-- A failure of inst: ask the policy what to do, then do it after its delay.
function Sup:failure(inst, reason, info)
  info = info or {}
  if self.stopping or inst.handling or inst.state == "gone" then return end
  if inst.state == "user_stopped" then return end    -- the user's: nothing to recover (mw.userops)
  -- a job that exited 0 is done, not failed; once done nothing of its container counts (a
  -- removal included: the next mw run would run it again, as it finds no completed container)
  if inst.state == "completed" then return end
  if inst.def.job and reason == "exited" and info.exit_code == 0 and not info.oom then return self:complete(inst) end
  if inst.state == "gave_up" or inst.state == "stopped" then
    if reason ~= "removed" then return end
  end
  inst.handling = true
  inst.down = nil
  inst.hb_restart = reason == "heartbeat" or nil
  self:stop_heartbeat(inst)
  local now = core.time()
  local uptime = inst.up_since and (core.now() - inst.up_since) or 0
  local history = {}
  for i, h in ipairs(inst.history) do history[i] = { time = h.time, reason = h.reason, uptime = h.uptime } end
  local record = {
    component = inst.name, instance = inst.index, reason = reason, exit_code = info.exit_code, oom = reason == "oom" or info.oom or false,
    memory = (inst.overrides and inst.overrides.memory) or inst.def.memory, uptime = uptime, time = now, restarts = inst.restarts, history = history,
    message = info.message,
    standby = self:standby_ready(inst),     -- a frozen standby is there to promote (mw.standby)
  }
  inst.history[#inst.history + 1] = { time = now, reason = reason, uptime = uptime }
  policy.trim_history(inst.history, now, self:history_limit())
  inst.failures = (inst.failures or 0) + 1
  local why = describe(reason, info)
  inst.last_failure = { reason = reason, exit_code = info.exit_code, time = now, message = why }
  local action, delay = self:decide(inst, record)
  inst.up_since = nil
  self:schedule(inst, action, delay, record, why)
end

-- A job ran to completion (exit 0): its dependents waiting on "completed" may start; no policy.
-- how: "exited" (seen now) or "already" (a container of this definition had, before this mw).
function Sup:complete(inst, how)
  if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) end
  inst.runner, inst.pending, inst.handling, inst.down, inst.up_since = nil, nil, false, nil, nil
  self:stop_heartbeat(inst)
  if inst.pidw then inst.pidw:close() inst.pidw = nil end
  transition(self, inst, "complete", "completed")
  log.info(inst.key, "completed", how == "already"
    and string.format("job already completed (container %s exited 0 with this definition); not run again",
      tostring(inst.id):sub(1, 12))
    or "job completed (exit code 0)", { container = inst.id })
end

function Sup:schedule(inst, action, delay, record, why)
  if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) end
  inst.runner = nil
  if action == "give_up" then
    inst.pending = nil
    inst.handling = false
    transition(self, inst, "give_up", "gave_up")
    log.error(inst.key, "gave_up", (why and (why .. "; ") or "") .. "giving up (restart policy)", { reason = record.reason })
    return
  end
  if action == "ignore" then
    inst.pending = nil
    inst.handling = false
    transition(self, inst, "ignore", "stopped")
    log.info(inst.key, "stopped", (why or "stopped") .. "; not restarting (restart policy)")
    return
  end
  inst.pending = { action = action, delay = delay, since = core.now(), record = record }
  inst.retry_at = core.time() + delay
  transition(self, inst, "failed", "backoff")
  if why then
    log.warn(inst.key, "failed", string.format("%s; %s %s", why, (action:gsub("_", " ")),
      delay > 0 and ("in " .. log.dur(delay)) or "at once"),
      { reason = record.reason, exit_code = record.exit_code, action = action, delay = delay })
  end
  inst.runner = self:spawn(inst.key .. "-recover", function()
    -- a first restart (delay 0) goes to the engine on the task's first run: no timer
    if delay > 0 then core.sleep(delay) end
    inst.runner = nil
    self:act(inst, action)
  end)
end

-- Reload: a pending delay is recomputed under the new policy, counting time already waited.
function Sup:repolicy(inst)
  local pending = inst.pending
  if not pending then return end
  local action, delay = self:decide(inst, pending.record)
  local waited = core.now() - pending.since
  local left = math.max(0, delay - waited)
  inst.pending = nil
  log.info(inst.key, "repolicy", string.format("new policy: %s in %s", action:gsub("_", " "), log.dur(left)))
  self:schedule(inst, action, left, pending.record, nil)
  if inst.pending then inst.pending.since, inst.pending.delay = pending.since, delay end
end

-- Stops inst's container quietly (the die event it causes is ours, not a failure).
function Sup:quiet_stop(inst)
  self:stop_heartbeat(inst)
  if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) inst.runner = nil end
  inst.pending = nil
  if inst.id then
    inst.quiet = inst.id
    self.engine:stop(inst.id, math.ceil(inst.def.stop_grace or 10))
  end
  transition(self, inst, "quiet_stop", "restarting")
end

-- A restart of inst counted, its container restarted and settled (or the failed start
-- reported): the escalations' dependents and the sharers of a restarted namespace.
function Sup:restart_settle(inst)
  inst.restarts = inst.restarts + 1
  local ok, err, info = self:restart_container(inst)
  if not ok then return self:start_failed(inst, err, info) end
  self:settle(inst)
end

function Sup:act(inst, action)
  inst.pending = nil
  local engine = self.engine
  log.info(inst.key, "restarting", action:gsub("_", " ") .. " now", { action = action })
  local ok, err
  if action == "restart_dependents" or action == "restart_stack" then
    local others = {}
    -- a completed job stays done, a user-stopped one is the user's to start: escalations skip them
    for _, other in ipairs(action == "restart_stack" and self:all_but(inst) or self:dependents(inst)) do
      if other.state ~= "completed" and other.state ~= "user_stopped" then others[#others + 1] = other end
    end
    local names = {}
    for _, other in ipairs(others) do names[#names + 1] = other.key end
    log.info(inst.key, "escalate", action == "restart_stack" and "restarting the whole stack"
      or ("restarting it and its dependents: " .. (#names > 0 and table.concat(names, ", ") or "none")))
    for i = #others, 1, -1 do
      local other = others[i]
      if other.state ~= "gave_up" then other.handling = true; self:quiet_stop(other) end
    end
    inst.restarts = inst.restarts + 1
    transition(self, inst, "recover", "restarting")
    local info
    ok, err, info = self:restart_container(inst)
    if not ok then
      for _, other in ipairs(others) do other.handling = false end
      return self:start_failed(inst, err, info)
    end
    self:settle(inst)
    for _, other in ipairs(others) do
      self:spawn(other.key .. "-restart", function()
        self:wait_deps(other)
        self:restart_settle(other)
      end)
    end
    return
  end
  inst.restarts = inst.restarts + 1
  transition(self, inst, "recover", "restarting")
  if action == "promote" then
    if self:standby_ready(inst) then
      local pinfo
      ok, err, pinfo = self:promote(inst)
      if ok then return self:settle(inst) end
      if pinfo and pinfo.exited then return self:start_failed(inst, err, pinfo) end
      log.warn(inst.key, "promote_failed", "promotion failed (" .. tostring(err) .. "); restarting in place")
    else
      log.info(inst.key, "promote", "no frozen standby to promote; restarting in place")
    end
    action = "restart"
  end
  if action == "reconnect" then
    -- a dying container also leaves its network: reconnect only one that still runs (a held
    -- one: whose holder runs, mw.holder; the holder is what is on the network)
    local info = inst.id and engine:inspect(inst.id)
    local running = info and info.State and info.State.Status == "running"
    if not running or (inst.holder and not inst.holder.running) then action = "restart" end
  end
  if action == "reconnect" then
    ok, err = engine:network_connect(self.network.id, inst.holder and inst.holder.id or inst.id, { inst.name })
    if ok then
      inst.handling = false
      transition(self, inst, "reconnected", inst.def.heartbeat and "starting" or "running")
      log.info(inst.key, "reconnected", "reconnected to network " .. self.network.name)
      inst.up_since = core.now()
      self:start_heartbeat(inst)
      return
    end
    log.warn(inst.key, "reconnect_failed", "reconnect failed (" .. tostring(err) .. "); recreating")
    action = "recreate"
  end
  local info
  if action == "restart" then
    ok, err, info = self:restart_container(inst)
  else
    ok, err, info = self:recreate(inst)
  end
  if not ok then return self:start_failed(inst, err, info) end
  self:settle(inst)
end

-- The end of a recovery: failures count again; a die that came while we were busy is one.
function Sup:settle(inst)
  inst.handling = false
  local died = inst.died
  inst.died = nil
  if died and died.id == inst.id then
    if self:being_removed(died.id) then
      if inst.id == died.id and not inst.handling then self:failure(inst, "removed", {}) end
      return
    end
    local code = died.exit_code
    if code == 0 or not code then
      code = self:confirm_exit(inst, died.id, code)      -- the event's 0 may not be the exit's
      if inst.id ~= died.id or inst.handling then return end
    end
    self:failure(inst, died.oom and "oom" or "exited", { exit_code = code })
  end
end

-- A start that did not take: an exit right after start is an ordinary failure (with its exit
-- code); anything else (image missing, engine error) is logged and goes to the policy too.
function Sup:start_failed(inst, err, info)
  inst.handling = false
  info = info or {}
  if not info.exited and not self.engine:ping() then
    -- the engine is away: not the component's fault, so no policy and no backoff of its own;
    -- once the engine answers, bring it up as at start (adopt what runs, start what does not)
    self:engine_away(err)
    transition(self, inst, "engine_away", "waiting")
    inst.runner = self:spawn(inst.key .. "-up", function()
      self:wait_until(function() return not self.away end)
      if self.stopping or inst.state == "gone" then return end
      local by = self:actual()
      self:bring_up(inst, by and by[inst.name] and by[inst.name][inst.index])
    end)
    return
  end
  if not info.exited then
    log.error(inst.key, "start_failed", "cannot start: " .. tostring(err))
    info.message = err
  end
  self:failure(inst, info.oom and "oom" or (info.exited and "exited" or "start_failed"), info)
end

-- ---------------------------------------------------------------------------------------------
-- the whole

-- Lists what the engine has for this stack: by[component][instance] = { containers }; the
-- network holders (mw.holder) go to self.found_holders by instance key.
function Sup:actual()
  -- mw.config-hash marks the containers mw made (an image mw built gives its labels to any
  -- container run from it, but not this one); mw.holder-hash marks the holders
  local list, err = self.engine:list { label = owner.filter(self.stack.name) }
  if not list then return nil, err end
  local by, standbys = {}, {}
  self.found_holders, self.stray_holders = {}, {}
  for _, listed in ipairs(list) do
    local labels = listed.Labels or {}
    local comp = labels["mw.config-hash"] and labels["mw.component"]
    if labels["mw.holder-hash"] and labels["mw.holder"] then
      -- another name: a start-first replacement's, interrupted (Sup:replace): removed at start
      if (listed.Names or {})[1] == "/" .. spec.holder_name(self.stack, labels["mw.holder"]) then
        self.found_holders[labels["mw.holder"]] = listed
      else
        self.stray_holders[#self.stray_holders + 1] = listed
      end
    elseif comp then
      local idx = tonumber(labels["mw.instance"]) or 1
      local key = idx == 1 and comp or (comp .. "-" .. idx)
      -- a frozen standby is not a candidate for the instance (mw.standby adopts it); a kept
      -- failed container is neither adopted nor removed
      if self.is_frozen_standby(listed) and not standbys[key] then
        standbys[key] = listed
      elseif not self:is_kept_failed(key, listed) then
        by[comp] = by[comp] or {}
        by[comp][idx] = by[comp][idx] or {}
        table.insert(by[comp][idx], listed)
      end
    end
  end
  -- a running container first (a promoted standby not yet renamed counts after the others)
  local function rank(listed)
    return (listed.State == "running" and 0 or 2) + ((listed.Labels or {})["mw.standby"] and 1 or 0)
  end
  for _, per in pairs(by) do
    for _, l in pairs(per) do table.sort(l, function(a, b) return rank(a) < rank(b) end) end
  end
  self.found_standbys = standbys
  return by
end

function Sup:start()
  -- an engine that stops answering mid-start is waited for; any other error ends the start
  local net_ok, err, by, lerr
  -- the images named by the stack are looked up beside the network and the list, and kept
  -- for the bring-ups (Sup:image_id); builds wait for their bring-up
  self.start_images, self.start_left = {}, 0
  for _ in pairs(self.comps) do self.start_left = self.start_left + 1 end
  local asked = {}
  for _, name in ipairs(self.stack.order) do
    local def = self.stack.components[name]
    local image = def.image
    -- one lookup per image and pull policy (Sup:image_key)
    local key = image and self:image_key(def, image)
    if key and not asked[key] then
      asked[key] = true
      self:spawn("start-image", function() self:image_id({ key = name, def = def }, image) end)
    end
  end
  for _ = 1, 60 do
    -- the network and the container list are independent: ask for both at once
    local lister = core.spawn(function() return self:actual() end, "start-list")
    net_ok, err = self:ensure_network()
    local joined
    joined, by, lerr = core.join(lister)
    if not joined then by, lerr = nil, by end
    if not net_ok then by = nil end
    if by then break end
    if self.engine:ping() then return nil, err or lerr end
    self:engine_away(err or lerr)
    self:wait_until(function() return not self.away end)
    if self.stopping then return nil, "stopped" end
  end
  if not by then return nil, err or lerr end
  self:say_hb_via()
  -- events first, so nothing that happens during bring-up is missed
  self.events_since = string.format("%.9f", core.time())
  self:watch("container", { label = owner.filter(self.stack.name),
                            type = { "container" } }, Sup.on_container_event)
  self:watch("network", { type = { "network" }, network = { self.network.name } }, Sup.on_network_event)
  for comp, per in pairs(by) do
    local group = self.groups[comp]
    for idx, list in pairs(per) do
      if not group or not group.instances[idx] then
        for _, listed in ipairs(list) do
          self.engine:remove(listed.Id, { force = true })
          log.info(comp, "removed", "removed container " .. listed.Id:sub(1, 12) .. (group and " of an instance beyond the scale"
            or " of a component no longer in the stack"))
        end
      end
    end
  end
  for _, listed in ipairs(self.stray_holders) do
    self.engine:remove(listed.Id, { force = true })
    log.info(nil, "removed", "removed the network holder " .. listed.Id:sub(1, 12) .. " of an unfinished replacement")
  end
  -- the holders and standbys of instances no longer in the stack
  for what, found in pairs { ["network holder"] = self.found_holders, standby = self.found_standbys or {} } do
    for key, listed in pairs(found) do
      if not self.comps[key] then
        found[key] = nil
        self.engine:remove(listed.Id, { force = true })
        log.info(key, "removed", "removed the " .. what .. " " .. listed.Id:sub(1, 12) .. " of an instance no longer in the stack")
      end
    end
  end
  self:autoscaler()
  for _, name in ipairs(self.stack.order) do
    for _, inst in ipairs(instances(self.groups[name])) do
      inst.runner = self:spawn(inst.key .. "-up", function()
        self:bring_up(inst, by[name] and by[name][inst.index])
        if inst.runner == core.current() then inst.runner = nil end
      end)
    end
  end
  return true
end

-- Waits until every component is up (healthy where it has a heartbeat), or gave up.
function Sup:wait_ready(timeout)
  local deadline = timeout and (core.now() + timeout)
  return self:wait_until(function()
    if deadline and core.now() > deadline then return true end
    for _, inst in pairs(self.comps) do
      if inst.state ~= "healthy" and inst.state ~= "gave_up" and inst.state ~= "stopped" and inst.state ~= "completed"
        and inst.state ~= "user_stopped"
        and not (inst.state == "running" and not inst.def.heartbeat) then
        return false
      end
    end
    return true
  end)
end

-- Stops supervising; containers keep running.
function Sup:stop()
  self.stopping = true
  for w in pairs(self.waiters) do w:notify() end
  for _, s in pairs(self.streams or {}) do s:close() end
  for _, inst in pairs(self.comps) do self:stop_heartbeat(inst) end
  local me = core.current()
  for t in pairs(self.tasks) do
    if t ~= me and t:status() ~= "done" and t:status() ~= "failed" and t:status() ~= "cancelled" then
      core.cancel(t)
    end
  end
  self.tasks = {}
  if self.autoscale_wake then self.autoscale_wake:close() self.autoscale_wake = nil end
end

-- Once at start: heartbeats take the published path although the stack has HTTP/TCP ones.
function Sup:say_hb_via()
  if self.hb_via ~= "published" or self.hb_via_said then return end
  for _, name in ipairs(self.stack.order) do
    local hb = self.stack.components[name].heartbeat
    if hb and (hb.kind == "http" or hb.kind == "tcp") then
      self.hb_via_said = true
      log.info(nil, "heartbeat_via", "heartbeats go to published ports on 127.0.0.1, not through the containers' "
        .. "network namespaces: " .. tostring(self.hb_via_why), { via = "published", reason = self.hb_via_why })
      return
    end
  end
end

-- What `mw status` shows of a running supervisor.
function Sup:snapshot()
  local out = { stack = self.stack.name, file = self.stack.file, pid = core.pid(), since = self.started_at,
                components = {} }
  out.groups = {}
  for _, name in ipairs(self.stack.order) do
    local group = self.groups[name]
    local running, healthy = 0, 0
    for _, inst in ipairs(group and instances(group) or {}) do
      if is_up(inst) then running = running + 1 end
      if inst.state == "healthy" or (inst.state == "running" and not inst.def.heartbeat) then healthy = healthy + 1 end
    end
    if group then
      out.groups[#out.groups + 1] = { name = name, desired = group.desired, running = running, healthy = healthy,
                                      depends_on = group.def.depends_on }
    end
  end
  for _, name in ipairs(self.stack.order) do
    for _, inst in ipairs(self.groups[name] and instances(self.groups[name]) or {}) do
      out.components[#out.components + 1] = {
        name = inst.key, component = name, instance = inst.index, state = inst.state, container = inst.id, restarts = inst.restarts,
        uptime = inst.up_since and (core.now() - inst.up_since) or nil,
        retry_at = inst.state == "backoff" and inst.retry_at or nil,
        last_failure = inst.last_failure, heartbeat_latency = inst.hb and inst.hb.latency or nil,
        heartbeat = inst.def.heartbeat and inst.def.heartbeat.kind or nil,
        heartbeat_port = inst.hb and inst.hb.host_port or nil,
        heartbeat_path = inst.def.heartbeat and inst.def.heartbeat.path or nil,
        heartbeat_via = inst.hb and inst.hb.via or nil,
        next_action = inst.pending and inst.pending.action or nil,
        missed = inst.missed or 0, failed_probes = inst.failed_probes or 0, failures = inst.failures or 0,
        last_probe_error = inst.hb and inst.hb.last_error or nil,
        standby = inst.standby and { container = inst.standby.id, state = inst.standby.state } or nil,
        network = spec.held(inst.def) and "held" or inst.def.network_mode or "own",
        holder = inst.holder and { name = inst.holder.name, container = inst.holder.id,
                                   state = inst.holder.running and "running" or "stopped" } or nil,
      }
    end
  end
  return out
end

M.cjson = cjson
return M
