-- Network holders: a held component's container (spec.held: the default) joins the network
-- namespace of a small container of its own, its holder, that does nothing but hold it
-- (tools/holder.c, as the kubelet's pause container holds a pod's). The holder carries the
-- network, the aliases, the published ports, the hostname and the DNS settings; the
-- component's container carries the rest and runs with NetworkMode "container:<holder id>".
-- When the component's process dies, the namespace, its address and the port proxy stay, so
-- the engine's start of the same container skips making them again: measured here (docker
-- 20.10, busybox httpd, 4 starts each) 213-234 ms on a holder against 697-776 ms on a user
-- network with a published port (docs/internals.md, "The network holder").
-- Methods of the supervisor (see mw.containers); inst.holder = { id, name, hash, running,
-- info } is the instance's holder once known.
local core = require "mw.core"
local tar = require "mw.tar"
local docker = require "mw.docker"
local spec = require "mw.spec"
local log = require "mw.log"
local owner = require "mw.owner"

local Sup = {}

local AHEAD = 2     -- holder starts at once for instances still waiting for their dependencies

-- Turns for the holder starts of instances that wait for their dependencies (Sup:precreate):
-- AHEAD at once, earliest in the stack's start order first. Started all together, the ten
-- holders of a 10-deep chain took the engine 4.5-6.5 s, and its first level waited for all of
-- them; in turns, each level's holder is ready about when its dependency is. A precreate marks
-- its instance's rank as it begins (Sup:ahead_mark), so a later one whose create answered
-- first does not take the turn of an earlier one still creating.
local function gate_of(self)
  local gate = self.holder_gate
  if not gate then
    gate = { busy = 0, queue = {}, marks = {} }
    self.holder_gate = gate
  end
  return gate
end

local function rank_of(self, inst)
  local rank = #self.stack.order + 1
  for i, name in ipairs(self.stack.order) do
    if name == inst.name then rank = i break end
  end
  return rank * 100000 + inst.index
end

-- Hands free turns to the queue's first while no marked instance ranks before it.
local function pump(gate)
  while gate.busy < AHEAD and gate.queue[1] do
    local first = gate.queue[1]
    for _, rank in pairs(gate.marks) do
      if rank < first.rank then return end
    end
    table.remove(gate.queue, 1)
    gate.busy = gate.busy + 1
    first.granted = true
    first.cond:notify()
  end
end

-- Marks inst as about to ask for a turn -> a value to close when its precreate ends.
function Sup:ahead_mark(inst)
  local gate = gate_of(self)
  gate.marks[inst] = rank_of(self, inst)
  return setmetatable({}, { __close = function() self:ahead_unmark(inst) end })
end

-- Drops inst's mark: its precreate will ask for no turn (its holder was found, not made).
function Sup:ahead_unmark(inst)
  local gate = gate_of(self)
  if gate.marks[inst] then gate.marks[inst] = nil pump(gate) end
end

-- Waits for inst's turn to start its holder -> a value to close when the start is done (a
-- to-be-closed variable: a cancelled task gives its turn back too).
function Sup:holder_turn(inst)
  local gate = gate_of(self)
  local me = { rank = gate.marks[inst] or rank_of(self, inst), cond = core.cond() }
  gate.marks[inst] = nil
  local at = #gate.queue + 1
  for i, o in ipairs(gate.queue) do
    if o.rank > me.rank then at = i break end
  end
  table.insert(gate.queue, at, me)
  pump(gate)
  do
    local _ <close> = setmetatable({}, { __close = function()
      me.cond:close()
      if me.taken then return end
      -- cancelled: out of the queue, or a turn granted and never used goes on
      for i, o in ipairs(gate.queue) do
        if o == me then table.remove(gate.queue, i) break end
      end
      if me.granted then gate.busy = gate.busy - 1 end
      pump(gate)
    end })
    while not me.granted do me.cond:wait() end
    me.taken = true
  end
  return setmetatable({}, { __close = function()
    gate.busy = gate.busy - 1
    pump(gate)
  end })
end

-- The holder's image: FROM scratch with the binary mw carries, tagged by that binary's hash,
-- built once per engine and shared by every stack of this installation -> id | nil, err.
function Sup:holder_image()
  if self.holder_img then return self.holder_img end
  local pending = self.holder_img_lookup
  if not pending then
    -- in a task of its own: an instance's task that asked first may be cancelled (mw stop, a
    -- retirement) while the others wait for the same build
    pending = {}
    self.holder_img_lookup = pending
    self:spawn("holder-image", function()
      local id, err = self:build_holder_image()
      pending.id, pending.err, pending.done = id, err, true
      self.holder_img, self.holder_img_lookup = id, nil
      self:changed()
    end)
  end
  self:wait_until(function() return pending.done end)
  if not pending.done then return nil, "stopped" end
  return pending.id, pending.err
end

function Sup:build_holder_image()
  local bin = require "mw.holderbin"
  local tag = "mw-" .. owner.prefix() .. "holder:" .. core.hash(bin):sub(1, 12)
  local img = self.engine:image_inspect(tag)
  if img and owner.owns(img.Config and img.Config.Labels or {}) then return img.Id end
  local ctx, err = tar.pack(false, { extra = {
    Dockerfile = 'FROM scratch\nCOPY holder /holder\nENTRYPOINT ["/holder"]\n',
    holder = { data = bin, mode = tonumber("755", 8) },
  } })
  local id
  if ctx then
    id, err = self.engine:build { context_tar = ctx, tag = tag, labels = owner.labels { ["mw.holder-image"] = "1" } }
    if id then log.info(nil, "holder", "built the network holder's image " .. tag) end
  end
  if not id then return nil, "cannot build the network holder's image " .. tag .. ": " .. tostring(err) end
  return id
end

-- Removes an instance's holder, or the holder h given (a replacement's or a promotion's, which
-- is not, or no longer, inst.holder), and says so -> true once it is gone. Its container must be
-- gone or going: the engine keeps a namespace's joiner running, cut off.
function Sup:drop_holder(inst, why, h)
  if not h then
    h = inst.holder or (self.found_holders and self.found_holders[inst.key] and { id = self.found_holders[inst.key].Id })
    inst.holder = nil
    if self.found_holders then self.found_holders[inst.key] = nil end
  end
  local id = h and h.id
  if not id then return end
  self.quiet_holders = self.quiet_holders or {}
  self.quiet_holders[id] = true
  local ok, err, code = self.engine:remove(id, { force = true })
  if not ok and code == "conflict" then ok = self:await_removal(id) end
  if not ok then
    log.warn(inst.key, "holder", "cannot remove its network holder " .. id:sub(1, 12) .. ": " .. tostring(err))
    return false
  end
  log.info(inst.key, "holder", "removed its network holder " .. id:sub(1, 12) .. (why and (" (" .. why .. ")") or ""))
  return true
end

-- The list entry of the stack's holder named name, if there is one.
function Sup:holder_named(name)
  local list = self.engine:list { label = owner.filter(self.stack.name, "mw.holder-hash"), name = { "^/" .. name .. "$" } }
  for _, listed in ipairs(list or {}) do
    if (listed.Names or {})[1] == "/" .. name then return listed end
  end
  return nil
end

-- The instance's holder for the holder part `hold` of its definition (spec.container), running:
-- the one it has, one found on the engine with the same hash (started if it stopped), or a new
-- one (an outdated one is removed first). With tmp_name, always a new one under that name (a
-- start-first replacement's, Sup:replace). With defer, a new one is returned created, its
-- start under way (h.pending; Sup:holder_ready waits); with ahead too, that start waits its
-- turn (Sup:holder_turn) -> the holder | nil, err.
function Sup:ensure_holder(inst, hold, tmp_name, defer, ahead)
  local engine = self.engine
  local name = tmp_name or spec.holder_name(self.stack, inst.key)
  if not tmp_name then
    local h = inst.holder
    -- a list since (the engine came back, a user start) may know better than the events did
    local known = self.found_holders and self.found_holders[inst.key]
    if h and known and known.Id == h.id and known.State ~= "running" then h.running = false end
    if h and h.hash == hold.hash and h.running then return h end
    local found
    if h and h.hash == hold.hash then
      found = { Id = h.id, State = "exited" }
    elseif h then
      self:drop_holder(inst, "its network changed")
    else
      found = self.found_holders and self.found_holders[inst.key]
      if not found and not self.found_holders then found = self:holder_named(name) end
      if found and (found.Labels or {})["mw.holder-hash"] ~= hold.hash then
        self:drop_holder(inst, "its network changed", { id = found.Id })
        found = nil
      end
    end
    if self.found_holders then self.found_holders[inst.key] = nil end
    if found then
      local ok, started = true, false
      if found.State ~= "running" then
        -- a new namespace under the same id: a container still running in the old one is cut
        -- off (Sup:ensure does not keep it)
        local err, code
        ok, err, code = engine:start(found.Id)
        started = ok
        if not ok and (code == "conflict" or tostring(err):find("marked for removal", 1, true)) then
          self:await_removal(found.Id)       -- removed by hand (docker rm -f): a new one
        elseif not ok and code ~= "notfound" then
          return nil, "cannot start its network holder: " .. tostring(err)
        end
      end
      if ok then
        local up, uerr = self:holder_up(inst, found.Id, name, hold.hash, "kept")
        if up then up.restarted = started end
        return up, uerr
      end
      inst.holder = nil
    end
  end
  local img, ierr = self:holder_image()
  if not img then return nil, ierr end
  -- (hold is this call's own, from spec.container: completed in place)
  local desc = hold.desc
  desc.image = img
  desc.labels["mw.holder"] = inst.key
  local id, err, code = engine:create(name, docker.container_spec(desc))
  if not id and code == "conflict" then
    -- a leftover of ours under the name (an mw killed mid-change): remove it if it is labelled
    local leftover = self:holder_named(name)
    if not leftover then return nil, "the name " .. name .. " is taken by a container mw does not own" end
    self:drop_holder(inst, "a leftover under its name", { id = leftover.Id })
    id, err = engine:create(name, docker.container_spec(desc))
  end
  if not id then return nil, "cannot create its network holder: " .. tostring(err) end
  -- known at once, so a retirement or a stop while it starts removes it (Sup:drop_holder)
  if not tmp_name then inst.holder = { id = id, name = name, hash = hold.hash, running = false } end
  local function discard(why)
    engine:remove(id, { force = true })
    if inst.holder and inst.holder.id == id then inst.holder = nil end
    return nil, why
  end
  local nets, nerr = self:extra_networks(inst)
  if not nets then return discard(nerr) end
  local cok, cerr = self:connect_networks(inst, id, nets)
  if not cok then return discard("its network holder: " .. tostring(cerr)) end
  local function start()
    local _ <close> = ahead and self:holder_turn(inst) or nil       -- its turn, given back at the end
    local ok, serr = engine:start(id)
    if not ok then return discard("cannot start its network holder: " .. tostring(serr)) end
    return self:holder_up(inst, id, name, hold.hash, "created", tmp_name)
  end
  if not defer then return start() end
  -- the caller creates its container (which needs only the holder's id) while this starts
  return { id = id, name = name, hash = hold.hash, pending = self:spawn(inst.key .. "-holder-start", start) }
end

-- Waits for a holder ensure_holder(..., true) returned -> the running holder | nil, err.
function Sup:holder_ready(h)
  if not h.pending then return h end
  local joined, started, err = core.join(h.pending)
  if not joined then return nil, "its network holder's start failed: " .. tostring(started) end
  return started, err
end

-- A started holder: its published ports are learnt once (they are its for its life). One just
-- made is on its networks and needs no inspect unless a heartbeat goes through a published
-- port (one round trip less per instance at a cold start on the netns path).
function Sup:holder_up(inst, id, name, hash, how, tmp)
  local hb = inst.def.heartbeat
  local info = { NetworkSettings = {} }
  if how ~= "created" or (self.hb_via ~= "netns" and hb and hb.port) then
    local err
    info, err = self.engine:inspect(id)
    if not info then return nil, "cannot inspect its network holder: " .. tostring(err) end
    if (info.State or {}).Status ~= "running" then return nil, "its network holder " .. name .. " does not run" end
  end
  local h = { id = id, name = name, hash = hash, running = true, info = info }
  local ok, err2 = true, nil
  if how ~= "created" then ok, err2 = self:holder_attach(inst, h) end
  if not ok then return nil, err2 end
  if not tmp then inst.holder = h end
  if how == "created" then
    log.info(inst.key, "holder", "created its network holder " .. name .. " (" .. id:sub(1, 12) .. ")", { holder = id })
  end
  return h
end

-- Puts a holder that left the stack's network (`docker network disconnect`) back on it, under
-- the component's name: its container's address is the holder's -> true | nil, err.
function Sup:holder_attach(inst, h, info)
  info = info or h.info
  local nets = info.NetworkSettings and info.NetworkSettings.Networks or {}
  if not self.network or nets[self.network.name] then return true end
  local ok, err = self.engine:network_connect(self.network.id, h.id, { inst.name })
  if not ok then return nil, "cannot attach its network holder to network " .. self.network.name .. ": " .. tostring(err) end
  log.info(inst.key, "reattached", "its network holder was not on network " .. self.network.name .. "; reattached")
  return true
end

-- The holder's die or destroy: the component's container is cut off (its namespace has no
-- interface any more), so it has failed; its restart makes the holder again (Sup:recreate).
function Sup:holder_event(inst, id, action)
  if self.quiet_holders and self.quiet_holders[id] then
    if action == "destroy" then self.quiet_holders[id] = nil end
    return
  end
  local h = inst.holder
  if not h or h.id ~= id or (action ~= "die" and action ~= "destroy") then return end
  h.running = false      -- the recovery makes or starts it again (Sup:restart_container)
  if inst.handling or inst.state == "user_stopped" then return end
  log.warn(inst.key, "holder", "its network holder " .. h.name .. " is gone (" .. action .. "); its container is cut off")
  self:failure(inst, "disconnected", { message = "its network holder " .. action })
end

return Sup
