-- Warm standby: one more container of a component, created, started and frozen (the engine's
-- pause), off the component's network alias; on a failure it is promoted (unpaused and given
-- the alias) in tens of milliseconds, and the next one is prepared in the background.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new; inst.standby is { id, hash, state, port, since }).
--
-- How a standby is recognised on the engine (adoption after mw restarts): the label
-- mw.standby=1 (labels cannot change after create, so a promoted one keeps it) and the state
-- paused. A promoted one runs, and is renamed to the instance's name in the background.
--
-- Where the standby lives until promoted: on a network of its own, mw-<stack>.standby, which
-- carries its published ports (the heartbeat's, on 127.0.0.1) and no alias; promotion connects
-- it to the stack's network with the component's alias, while it is unpaused. Tried and
-- dropped: the standby on the stack network without the alias, given it at promotion by
-- disconnect + connect (the engine cannot add an alias to an endpoint): on 20.10 the published
-- ports ride on that endpoint and stopped answering after the reconnect. A standby made off
-- every network cannot be given ports, and its first connect was the slowest (352-706 ms
-- against 168-303 ms for disconnect + connect, under load; unpause alone 33-87 ms).
local core = require "mw.core"
local json = require "mw.json"
local log = require "mw.log"
local spec = require "mw.spec"
local owner = require "mw.owner"

local Sup = {}

local READY_WAIT = 30          -- seconds a new standby has to answer its heartbeat
local NO_HB_SETTLE = 1         -- seconds a standby without a heartbeat runs before it is frozen
local RETRY_MAX = 30           -- the longest wait between two failed preparations

-- The network standbys are made on (see above), made once per stack and shared by its
-- standbys. -> id | nil, err
function Sup:standby_network()
  local look = self.standby_net
  if look then
    self:wait_until(function() return look.done end)
    if look.id then return look.id end
    self.standby_net = nil
    return nil, look.err
  end
  look = {}
  self.standby_net = look
  local name = spec.network_name(self.stack) .. ".standby"
  local list, err = self.engine:network_list { label = owner.filter(self.stack.name) }
  for _, net in ipairs(list or {}) do
    if net.Name == name then look.id = net.Id end
  end
  if list and not look.id then
    look.id, err = self.engine:network_create(name, spec.labels(self.stack, { ["mw.network"] = ".standby" }))
    if look.id then log.info(nil, "network", "created network " .. name .. " for standbys") end
  end
  look.err, look.done = err, true
  self:changed()
  if not look.id then self.standby_net = nil return nil, err end
  return look.id
end

local function standby_name(self, inst) return spec.container_name(self.stack, inst.key) .. "-standby" end
local function failed_name(self, inst) return spec.container_name(self.stack, inst.key) .. "-failed" end

-- Whether a container listed for inst is its kept failed one (never adopted, never removed but
-- by the next kept one or by destroy).
function Sup:is_kept_failed(key, listed)
  local want = "/" .. spec.container_name(self.stack, key) .. "-failed"
  for _, n in ipairs(listed.Names or {}) do if n == want then return true end end
  return false
end

function Sup.is_frozen_standby(listed)
  return (listed.Labels or {})["mw.standby"] == "1" and listed.State == "paused"
end

-- Whether inst has a frozen standby of its current definition.
function Sup:standby_ready(inst)
  local sb = inst.standby
  return sb ~= nil and sb.state == "frozen" and sb.hash == inst.hash
end

-- The standby's create body: the active one's, on the standbys' network instead of the
-- stack's (so with no alias), with the label that says what it is.
function Sup:standby_body(inst, img, net)
  local body, hash = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
  body.Labels["mw.standby"] = "1"
  body.HostConfig.NetworkMode = net
  body.NetworkingConfig = { EndpointsConfig = { [net] = { Aliases = json.array() } } }
  return body, hash
end

-- Removes a container of ours under `name` (a leftover), never one without our label.
function Sup:free_name(name)
  local list = self.engine:list { label = owner.filter(self.stack.name), name = { "^/" .. name .. "$" } }
  for _, listed in ipairs(list or {}) do
    for _, n in ipairs(listed.Names or {}) do
      if n == "/" .. name then
        local _, _, code = self.engine:remove(listed.Id, { force = true })
        if code == "conflict" then self:await_removal(listed.Id) end
      end
    end
  end
end

local function drop(self, inst, why)
  local sb = inst.standby
  inst.standby = nil
  if sb and sb.id then
    self.engine:remove(sb.id, { force = true })
    if why then log.info(inst.key, "standby", "removed the standby " .. sb.id:sub(1, 12) .. " (" .. why .. ")") end
  end
end

-- Makes one standby for inst: create (on the network, no alias), start, wait until it answers
-- its heartbeat, freeze. -> true | nil, err
function Sup:prepare_standby(inst)
  local engine = self.engine
  local img, ierr = self:image_for(inst)
  if not img then return nil, ierr end
  local net, err0 = self:standby_network()
  if not net then return nil, "cannot make the standbys' network: " .. tostring(err0) end
  local body, hash = self:standby_body(inst, img, net)
  local name = standby_name(self, inst)
  local nets, nerr = self:extra_networks(inst)
  if not nets then return nil, nerr end
  local id, err, code = engine:create(name, body)
  if not id and code == "conflict" then
    self:free_name(name)
    id, err = engine:create(name, body)
  end
  if not id then return nil, err end
  inst.standby = { id = id, hash = hash, state = "preparing", since = core.time() }
  for _, netid in pairs(nets) do
    local ok, cerr = engine:network_connect(netid, id)
    if not ok then return nil, "cannot connect to an extra network: " .. tostring(cerr) end
  end
  local ok, serr = engine:start(id)
  if not ok then return nil, serr end
  local info = engine:inspect(id)
  local hb = inst.def.heartbeat
  local port
  if info and hb and hb.port then
    for _, b in ipairs(((info.NetworkSettings or {}).Ports or {})[hb.port .. "/tcp"] or {}) do
      if b.HostIp == "127.0.0.1" or b.HostIp == "0.0.0.0" or b.HostIp == "" then port = tonumber(b.HostPort) end
    end
  end
  if hb and (port or hb.kind == "exec") then
    local healthy, why = self:wait_healthy(inst, id, port, core.now() + math.max(READY_WAIT, hb.grace))
    if not healthy then return nil, "it did not answer its heartbeat: " .. tostring(why) end
  else
    core.sleep(NO_HB_SETTLE)
  end
  local pok, perr = engine:pause(id)
  if not pok then return nil, "cannot freeze it: " .. tostring(perr) end
  if not inst.standby or inst.standby.id ~= id then return nil, "replaced meanwhile" end
  inst.standby.state, inst.standby.port, inst.standby.since = "frozen", port, core.time()
  log.info(inst.key, "standby", "standby " .. id:sub(1, 12) .. " ready (frozen)", { container = id })
  self:changed(inst)
  return true
end

-- Takes over a frozen standby found on the engine at start, if it runs inst's definition.
local function adopt(self, inst, listed)
  if listed.Labels["mw.config-hash"] ~= inst.hash then
    self.engine:remove(listed.Id, { force = true })
    log.info(inst.key, "standby", "removed an outdated standby " .. listed.Id:sub(1, 12))
    return false
  end
  inst.standby = { id = listed.Id, hash = inst.hash, state = "frozen", since = core.time() }
  log.info(inst.key, "standby", "adopted the frozen standby " .. listed.Id:sub(1, 12), { container = listed.Id })
  self:changed(inst)
  return true
end

-- Brings inst's standby in line with its definition, in the background: one when it asks for
-- one and has none of its current definition, none when it does not ask. Called after every
-- start of the active container and after a reload.
function Sup:standby_sync(inst)
  if inst.standby_task or self.stopping or inst.state == "gone" then return end
  if not inst.def.standby then
    local found = self.found_standbys and self.found_standbys[inst.key]
    if found then
      self.found_standbys[inst.key] = nil
      self.engine:remove(found.Id, { force = true })
    end
    if inst.standby then self:spawn(inst.key .. "-standby", function() drop(self, inst, "no standby asked for") end) end
    return
  end
  if self:standby_ready(inst) then return end
  local task
  task = self:spawn(inst.key .. "-standby", function()
    local delay = 1
    while not self.stopping and inst.state ~= "gone" and inst.def.standby and not self:standby_ready(inst) do
      local found = self.found_standbys and self.found_standbys[inst.key]
      if found then
        self.found_standbys[inst.key] = nil
        if adopt(self, inst, found) then break end
      end
      if inst.standby then drop(self, inst, "outdated") end
      local ok, err = self:prepare_standby(inst)
      if ok then break end
      drop(self, inst)
      log.warn(inst.key, "standby", "cannot prepare a standby (" .. tostring(err) .. "); trying again in " .. log.dur(delay))
      core.sleep(delay)
      delay = math.min(delay * 2, RETRY_MAX)
    end
    if inst.standby_task == task then inst.standby_task = nil end
  end)
  inst.standby_task = task
end

-- Promotes inst's frozen standby in place of its failed container: unpause it and, at the same
-- time, connect it to the stack's network with the component's alias (and give it the alias on
-- its extra networks: disconnect + connect, the engine cannot add one to an endpoint); then
-- heartbeats and status follow it. -> true | nil, err[, info]
function Sup:promote(inst)
  local engine = self.engine
  local sb = inst.standby
  inst.standby = nil
  if inst.standby_task and inst.standby_task ~= core.current() then core.cancel(inst.standby_task) end
  inst.standby_task = nil
  local old = inst.id
  if old then inst.quiet = old end
  if inst.pidw then inst.pidw:close() inst.pidw = nil end
  local t0 = core.now()
  local nets = { self.network.id }
  for _, netid in pairs(self.extra or {}) do
    for _, n in ipairs(inst.def.networks or {}) do
      if self.extra[spec.extra_network(self.stack, n)] == netid then nets[#nets + 1] = netid end
    end
  end
  local aliasers = {}
  for i, netid in ipairs(nets) do
    aliasers[i] = core.spawn(function()
      if i > 1 then engine:network_disconnect(netid, sb.id, true) end
      return engine:network_connect(netid, sb.id, { inst.name })
    end, inst.key .. "-alias")
  end
  local uok, uerr = engine:unpause(sb.id)
  local t_unpause = core.now() - t0
  local alias_err
  for _, task in ipairs(aliasers) do
    local joined, ok, err = core.join(task)
    if not joined or not ok then alias_err = alias_err or tostring(joined and err or ok) end
  end
  local t_alias = core.now() - t0
  if not uok then
    engine:remove(sb.id, { force = true })
    return nil, "cannot unpause the standby: " .. tostring(uerr)
  end
  inst.id, inst.hash = sb.id, sb.hash
  -- the failed one's network holder (mw.holder; it was held before a reload asked for a standby)
  -- holds the component's alias too: it goes now, beside the promotion
  if inst.holder then
    local gone = inst.holder
    inst.holder = nil
    self:spawn(inst.key .. "-holder-drop", function() self:drop_holder(inst, "its standby was promoted", gone) end)
  end
  if alias_err then log.warn(inst.key, "promote", "the promoted standby has no alias yet (" .. alias_err .. ")") end
  local ok, err, info = self:post_start(inst, "promoted")
  if not ok then return nil, err, info end
  log.info(inst.key, "promote", string.format("promoted the standby in %s (unpause %s, alias %s)",
    log.dur(core.now() - t0), log.dur(t_unpause), log.dur(t_alias)),
    { container = sb.id, unpause_ms = t_unpause * 1000, alias_ms = t_alias * 1000 })
  self:spawn(inst.key .. "-promoted", function() self:after_promotion(inst, old, sb.id) end)
  return true
end

-- After a promotion, off the critical path: the failed container goes (or is kept, stopped,
-- as <name>-failed for its logs, when the standby's keep_failed says so), the promoted one
-- takes the instance's name, and the next standby is prepared.
function Sup:after_promotion(inst, old, id)
  local engine = self.engine
  if old then
    engine:unpause(old)     -- a hung one (paused by someone) first; an error here means it was not
    if inst.def.standby and inst.def.standby.keep_failed then
      engine:kill(old, "KILL")
      self:free_name(failed_name(self, inst))
      local ok = engine:rename(old, failed_name(self, inst))
      if ok then log.info(inst.key, "standby", "kept the failed container " .. old:sub(1, 12) .. " as " .. failed_name(self, inst)) end
    else
      local _, _, code = engine:remove(old, { force = true })
      if code == "conflict" then self:await_removal(old) end
    end
  end
  if inst.id == id then engine:rename(id, spec.container_name(self.stack, inst.key)) end
  self:standby_sync(inst)
end

-- A standby that died or was removed while frozen (not by mw): make another.
function Sup:standby_event(inst, id, action)
  local sb = inst.standby
  if not sb or sb.id ~= id or (action ~= "die" and action ~= "destroy") then return false end
  inst.standby = nil
  log.warn(inst.key, "standby", "the standby " .. id:sub(1, 12) .. " " .. (action == "die" and "died" or "was removed")
    .. "; preparing another")
  self:spawn(inst.key .. "-standby-gone", function()
    if action == "die" then self.engine:remove(id, { force = true }) end
    self:standby_sync(inst)
  end)
  self:changed(inst)
  return true
end

-- At retirement: the standby goes with its instance.
function Sup:drop_standby(inst)
  if inst.standby_task and inst.standby_task ~= core.current() then core.cancel(inst.standby_task) end
  inst.standby_task = nil
  drop(self, inst, "retired")
end

return Sup
