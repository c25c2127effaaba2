-- The supervisor of one stack: brings components up in dependency order, watches them through
-- the engine's events and heartbeats, and handles each failure by the component's policy.
-- Sup is the one object; its methods live in a few files of one concern each, merged below:
-- mw.containers, mw.heartbeat, mw.events, mw.rollout and mw.autoscaler. This file holds
-- construction, dependency waits, failures and the policy, start and stop, and the snapshot.
local core = require "mw.core"
local cjson = require "cjson"
local log = require "mw.log"
local policy = require "mw.policy"
local owner = require "mw.owner"
local instance = require "mw.instance"
local usercode = require "mw.usercode"

local instances, transition, is_up = instance.instances, instance.transition, instance.is_up
local shown, failure_text = usercode.shown, usercode.failure_text

local M = {}
local Sup = {}
Sup.__index = Sup

for _, part in ipairs { "mw.containers", "mw.heartbeat", "mw.events", "mw.rollout", "mw.autoscaler" } do
  for name, fn in pairs(require(part)) do Sup[name] = fn end
end

local POLICY_BUDGET = usercode.BUDGET
local MAX_CHANGES = 8       -- entries of a policy's third result looked at
local MAX_DELAY = 24 * 3600

-- ---------------------------------------------------------------------------------------------
-- construction and small helpers

function M.new(o)
  local self = setmetatable({
    engine = o.engine, stack = o.stack, comps = {}, groups = {}, images = {}, waiters = {},
    tasks = {}, network = nil, stopping = false, on_change = o.on_change, lookups = {},
    started_at = core.time(),
  }, Sup)
  for _, name in ipairs(o.stack.order) do self:_group(name, o.stack.components[name]) end
  return self
end

-- A component is a group of instances: each has its own container, heartbeat, failure record
-- and backoff. Instance 1 is named like the component, instance i>1 "<component>-<i>".
function Sup:_group(name, def)
  local desired = def.scale or 1
  if def.autoscale then desired = math.max(def.autoscale.min, math.min(def.autoscale.max, desired)) end
  local g = { name = name, def = def, desired = desired, instances = {} }
  self.groups[name] = g
  for i = 1, g.desired do self:_instance(g, i) end
  return g
end

function Sup:_instance(g, i)
  local c = instance.new(g, i)
  self.comps[c.key] = c
  g.instances[i] = c
  return c
end

function Sup:spawn(name, fn, ...)
  local t = core.spawn(fn, name, ...)
  self.tasks[t] = true
  return t
end

-- Everyone waiting for a state change (dependencies, status writers) gets a nudge.
function Sup:changed(c)
  for w in pairs(self.waiters) do w:notify() end
  if self.on_change then self.on_change(c) end
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
local function condition_met(d, cond)
  if cond == "healthy" then return d.state == "healthy" or (d.state == "running" and not d.def.heartbeat) end
  return is_up(d) or d.state == "stopped"
end

function Sup:wait_deps(c)
  return self:wait_until(function()
    if c.state == "gone" then return true end
    for dep, cond in pairs(c.def.depends_on) do
      local g = self.groups[dep]
      if not g then return false end
      for _, d in pairs(g.instances) do
        if not condition_met(d, cond) then return false end
      end
    end
    return true
  end)
end

-- Instances of the components that depend on c's, directly or not, in start order.
function Sup:dependents(c)
  local set = { [c.name] = true }
  local out = {}
  for _, name in ipairs(self.stack.order) do
    local g = self.groups[name]
    if g and name ~= c.name then
      for dep in pairs(g.def.depends_on) do
        if set[dep] then
          set[name] = true
          for _, d in ipairs(instances(g)) do out[#out + 1] = d end
          break
        end
      end
    end
  end
  return out
end

-- Every instance but c, in start order.
function Sup:all_but(c)
  local out = {}
  for _, name in ipairs(self.stack.order) do
    local g = self.groups[name]
    for _, d in ipairs(g and instances(g) or {}) do
      if d ~= c then out[#out + 1] = d end
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
function Sup:decide(c, record)
  local p = c.def.restart or policy.default
  local mine = record_copy(record)
  local ok, action, delay, changes = core.budget(function() return p(mine) end, POLICY_BUDGET)
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
    log.warn(c.key, "policy_error", "restart policy failed (" .. why .. "); the default policy applies")
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
        c.overrides = c.overrides or {}
        c.overrides.memory = v
        log.info(c.key, "override", string.format("policy raised the memory limit to %d MiB", v // 1048576))
      elseif k == "cpus" and type(v) == "number" and v > 0 then
        c.overrides = c.overrides or {}
        c.overrides.cpus = v
      else
        log.warn(c.key, "policy_error", "policy asked to change " .. shown(k) .. "; only memory and cpus can change")
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

-- A failure of c: ask the policy what to do, then do it after its delay.
function Sup:failure(c, reason, info)
  info = info or {}
  if self.stopping or c.handling or c.state == "gone" then return end
  if c.state == "gave_up" or c.state == "stopped" then
    if reason ~= "removed" then return end
  end
  c.handling = true
  c.down = nil
  c.hb_restart = reason == "heartbeat" or nil
  self:stop_heartbeat(c)
  local now = core.time()
  local uptime = c.up_since and (core.now() - c.up_since) or 0
  local history = {}
  for i, h in ipairs(c.history) do history[i] = { time = h.time, reason = h.reason, uptime = h.uptime } end
  local record = {
    component = c.name, instance = c.index, reason = reason, exit_code = info.exit_code, oom = reason == "oom" or info.oom or false,
    memory = (c.overrides and c.overrides.memory) or c.def.memory, uptime = uptime, time = now, restarts = c.restarts, history = history,
    message = info.message,
  }
  c.history[#c.history + 1] = { time = now, reason = reason, uptime = uptime }
  policy.trim_history(c.history, now, self:history_limit())
  c.failures = (c.failures or 0) + 1
  local why = describe(reason, info)
  c.last_failure = { reason = reason, exit_code = info.exit_code, time = now, message = why }
  local action, delay = self:decide(c, record)
  c.up_since = nil
  self:schedule(c, action, delay, record, why)
end

function Sup:schedule(c, action, delay, record, why)
  if c.runner and c.runner ~= core.current() then core.cancel(c.runner) end
  c.runner = nil
  if action == "give_up" then
    c.pending = nil
    c.handling = false
    transition(self, c, "give_up", "gave_up")
    log.error(c.key, "gave_up", (why and (why .. "; ") or "") .. "giving up (restart policy)", { reason = record.reason })
    return
  end
  if action == "ignore" then
    c.pending = nil
    c.handling = false
    transition(self, c, "ignore", "stopped")
    log.info(c.key, "stopped", (why or "stopped") .. "; not restarting (restart policy)")
    return
  end
  c.pending = { action = action, delay = delay, since = core.now(), record = record }
  c.retry_at = core.time() + delay
  transition(self, c, "failed", "backoff")
  if why then
    log.warn(c.key, "failed", string.format("%s; %s in %s", why, action:gsub("_", " "), log.dur(delay)),
      { reason = record.reason, exit_code = record.exit_code, action = action, delay = delay })
  end
  c.runner = self:spawn(c.key .. "-recover", function()
    core.sleep(delay)
    c.runner = nil
    self:act(c, action)
  end)
end

-- Reload: a pending delay is recomputed under the new policy, counting time already waited.
function Sup:repolicy(c)
  local p = c.pending
  if not p then return end
  local action, delay = self:decide(c, p.record)
  local waited = core.now() - p.since
  local left = math.max(0, delay - waited)
  c.pending = nil
  log.info(c.key, "repolicy", string.format("new policy: %s in %s", action:gsub("_", " "), log.dur(left)))
  self:schedule(c, action, left, p.record, nil)
  if c.pending then c.pending.since, c.pending.delay = p.since, delay end
end

-- Stops c's container quietly (the die event it causes is ours, not a failure).
function Sup:quiet_stop(c)
  self:stop_heartbeat(c)
  if c.runner and c.runner ~= core.current() then core.cancel(c.runner) c.runner = nil end
  c.pending = nil
  if c.id then
    c.quiet = c.id
    self.engine:stop(c.id, math.ceil(c.def.stop_grace or 10))
  end
  transition(self, c, "quiet_stop", "restarting")
end

function Sup:act(c, action)
  c.pending = nil
  local e = self.engine
  log.info(c.key, "restarting", action:gsub("_", " ") .. " now", { action = action })
  local ok, err
  if action == "restart_dependents" or action == "restart_stack" then
    local group = action == "restart_stack" and self:all_but(c) or self:dependents(c)
    local names = {}
    for _, d in ipairs(group) do names[#names + 1] = d.key end
    log.info(c.key, "escalate", action == "restart_stack" and "restarting the whole stack"
      or ("restarting it and its dependents: " .. (#names > 0 and table.concat(names, ", ") or "none")))
    for i = #group, 1, -1 do
      local d = group[i]
      if d.state ~= "gave_up" then d.handling = true; self:quiet_stop(d) end
    end
    c.restarts = c.restarts + 1
    transition(self, c, "recover", "restarting")
    local info
    ok, err, info = self:restart_container(c)
    if not ok then
      for _, d in ipairs(group) do d.handling = false end
      return self:start_failed(c, err, info)
    end
    self:settle(c)
    for _, d in ipairs(group) do
      self:spawn(d.key .. "-restart", function()
        self:wait_deps(d)
        d.restarts = d.restarts + 1
        local dok, derr, dinfo = self:restart_container(d)
        if not dok then return self:start_failed(d, derr, dinfo) end
        self:settle(d)
      end)
    end
    return
  end
  c.restarts = c.restarts + 1
  transition(self, c, "recover", "restarting")
  if action == "reconnect" then
    -- a dying container also leaves its network: reconnect only one that still runs
    local info = c.id and e:inspect(c.id)
    local running = info and info.State and info.State.Status == "running"
    if not running then action = "restart" end
  end
  if action == "reconnect" then
    ok, err = e:network_connect(self.network.id, c.id, { c.name })
    if ok then
      c.handling = false
      transition(self, c, "reconnected", c.def.heartbeat and "starting" or "running")
      log.info(c.key, "reconnected", "reconnected to network " .. self.network.name)
      c.up_since = core.now()
      self:start_heartbeat(c)
      return
    end
    log.warn(c.key, "reconnect_failed", "reconnect failed (" .. tostring(err) .. "); recreating")
    action = "recreate"
  end
  local info
  if action == "restart" then
    ok, err, info = self:restart_container(c)
  else
    ok, err, info = self:recreate(c)
  end
  if not ok then return self:start_failed(c, err, info) end
  self:settle(c)
end

-- The end of a recovery: failures count again; a die that came while we were busy is one.
function Sup:settle(c)
  c.handling = false
  local d = c.died
  c.died = nil
  if d and d.id == c.id then
    if self:being_removed(d.id) then
      if c.id == d.id and not c.handling then self:failure(c, "removed", {}) end
      return
    end
    self:failure(c, d.oom and "oom" or "exited", { exit_code = d.exit_code })
  end
end

-- A start that did not take: an exit right after start is an ordinary failure (with its exit
-- code); anything else (image missing, engine error) is logged and goes to the policy too.
function Sup:start_failed(c, err, info)
  c.handling = false
  info = info or {}
  if not info.exited and not self.engine:ping() then
    -- the engine is away: not the component's fault, so no policy and no backoff of its own;
    -- once the engine answers, bring it up as at start (adopt what runs, start what does not)
    self:engine_away(err)
    transition(self, c, "engine_away", "waiting")
    c.runner = self:spawn(c.key .. "-up", function()
      self:wait_until(function() return not self.away end)
      if self.stopping or c.state == "gone" then return end
      local by = self:actual()
      self:bring_up(c, by and by[c.name] and by[c.name][c.index])
    end)
    return
  end
  if not info.exited then
    log.error(c.key, "start_failed", "cannot start: " .. tostring(err))
    info.message = err
  end
  self:failure(c, info.oom and "oom" or (info.exited and "exited" or "start_failed"), info)
end

-- ---------------------------------------------------------------------------------------------
-- the whole

-- Lists what the engine has for this stack: by[component][instance] = { containers }.
function Sup:actual()
  local list, err = self.engine:list { label = owner.filter(self.stack.name, "mw.config-hash") }
  if not list then return nil, err end
  local by = {}
  for _, x in ipairs(list) do
    local labels = x.Labels or {}
    local comp = labels["mw.component"]
    if comp then
      local idx = tonumber(labels["mw.instance"]) or 1
      by[comp] = by[comp] or {}
      by[comp][idx] = by[comp][idx] or {}
      table.insert(by[comp][idx], x)
    end
  end
  return by
end

function Sup:start()
  -- an engine that stops answering mid-start is waited for; any other error ends the start
  local net_ok, err, by, lerr
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
  -- events first, so nothing that happens during bring-up is missed
  self.events_since = string.format("%.9f", core.time())
  self:watch("container", { label = owner.filter(self.stack.name),
                            type = { "container" } }, Sup.on_container_event)
  self:watch("network", { type = { "network" }, network = { self.network.name } }, Sup.on_network_event)
  for comp, per in pairs(by) do
    local g = self.groups[comp]
    for idx, list in pairs(per) do
      if not g or not g.instances[idx] then
        for _, x in ipairs(list) do
          self.engine:remove(x.Id, { force = true })
          log.info(comp, "removed", "removed container " .. x.Id:sub(1, 12) .. (g and " of an instance beyond the scale"
            or " of a component no longer in the stack"))
        end
      end
    end
  end
  self:autoscaler()
  for _, name in ipairs(self.stack.order) do
    for _, c in ipairs(instances(self.groups[name])) do
      c.runner = self:spawn(c.key .. "-up", function()
        self:bring_up(c, by[name] and by[name][c.index])
        if c.runner == core.current() then c.runner = nil end
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
    for _, c in pairs(self.comps) do
      if c.state ~= "healthy" and c.state ~= "gave_up" and c.state ~= "stopped"
        and not (c.state == "running" and not c.def.heartbeat) then
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
  for _, c in pairs(self.comps) do self:stop_heartbeat(c) end
  local me = core.current()
  for t in pairs(self.tasks) do
    if t ~= me and t:status() ~= "done" and t:status() ~= "failed" and t:status() ~= "cancelled" then
      core.cancel(t)
    end
  end
  self.tasks = {}
  if self.autoscale_wake then self.autoscale_wake:close() self.autoscale_wake = nil end
end

-- What `mw status` shows of a running supervisor.
function Sup:snapshot()
  local out = { stack = self.stack.name, file = self.stack.file, pid = core.pid(), since = self.started_at,
                components = {} }
  out.groups = {}
  for _, name in ipairs(self.stack.order) do
    local g = self.groups[name]
    local running, healthy = 0, 0
    for _, c in ipairs(g and instances(g) or {}) do
      if is_up(c) then running = running + 1 end
      if c.state == "healthy" or (c.state == "running" and not c.def.heartbeat) then healthy = healthy + 1 end
    end
    if g then
      out.groups[#out.groups + 1] = { name = name, desired = g.desired, running = running, healthy = healthy,
                                      depends_on = g.def.depends_on }
    end
  end
  for _, name in ipairs(self.stack.order) do
    for _, c in ipairs(self.groups[name] and instances(self.groups[name]) or {}) do
      out.components[#out.components + 1] = {
        name = c.key, component = name, instance = c.index, state = c.state, container = c.id, restarts = c.restarts,
        uptime = c.up_since and (core.now() - c.up_since) or nil,
        retry_at = c.state == "backoff" and c.retry_at or nil,
        last_failure = c.last_failure, heartbeat_latency = c.hb and c.hb.latency or nil,
        heartbeat = c.def.heartbeat and c.def.heartbeat.kind or nil,
        heartbeat_port = c.hb and c.hb.host_port or nil,
        heartbeat_path = c.def.heartbeat and c.def.heartbeat.path or nil,
        next_action = c.pending and c.pending.action or nil,
        missed = c.missed or 0, failed_probes = c.failed_probes or 0, failures = c.failures or 0,
        last_probe_error = c.hb and c.hb.last_error or nil,
      }
    end
  end
  return out
end

M.cjson = cjson
return M
