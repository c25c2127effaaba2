-- The supervisor's network, images, volumes and containers: create, start, adopt, restart in
-- place, recreate, replace.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new) and `group` a component's instances.
local core = require "mw.core"
local proc = require "mw.proc"
local tar = require "mw.tar"
local fs = require "mw.fs"
local mwnet = require "mw.net"
local probe = require "mw.probe"
local spec = require "mw.spec"
local log = require "mw.log"
local owner = require "mw.owner"
local instance = require "mw.instance"

local transition, is_up, instances = instance.transition, instance.is_up, instance.instances

local Sup = {}

local REMOVAL_WAIT = 10         -- seconds to wait for a removal someone else started

-- ---------------------------------------------------------------------------------------------
-- the network and images

function Sup:ensure_network()
  local engine = self.engine
  local name = spec.network_name(self.stack)
  local list, err = engine:network_list { label = owner.filter(self.stack.name) }
  if not list then return nil, err end
  -- two creates racing (an mw killed mid-create) can leave two networks of one name on 20.10:
  -- keep the oldest, remove the others while they are empty
  local same = {}
  for _, net in ipairs(list) do
    if net.Name == name then same[#same + 1] = net end
  end
  table.sort(same, function(a, b) return tostring(a.Created) < tostring(b.Created) end)
  for i = 2, #same do
    if engine:network_remove(same[i].Id) then log.info(nil, "network", "removed a duplicate network " .. name) end
  end
  if same[1] then
    self.network = { id = same[1].Id, name = name }
    return self.network
  end
  local id, cerr, code = engine:network_create(name, spec.labels(self.stack))
  if not id then
    if code == "conflict" then
      return nil, "a network named " .. name .. " exists but mw does not own it (no " .. owner.term() .. " label)"
    end
    return nil, cerr
  end
  log.info(nil, "network", "created network " .. name)
  self.network = { id = id, name = name }
  return self.network
end

local MAX_DOCKERFILE = 1024 * 1024   -- mw.stack checks the same cap (stack.MAX_DOCKERFILE)

local function dockerfile_in(context, dockerfile)
  local prefix = context .. "/"
  if dockerfile:sub(1, #prefix) == prefix then return dockerfile:sub(#prefix + 1) end
  return nil
end

-- The key of an image lookup: the name and the pull policy that applies to def (`mw run
-- --pull` over the component's `pull`), as two components naming one image may differ in
-- policy (one "never", one "always") and each must get its own answer. -> key, policy
function Sup:image_key(def, name)
  local policy = self.pull_override or def.pull or "missing"
  return policy .. " " .. name, policy
end

-- An image name to its ID, pulling it when it is not here. Everyone asking for one name under
-- one pull policy while a lookup is under way shares it: a cold start of N components on one
-- image makes one inspect, not N. Nothing is kept afterwards (a name may point elsewhere by
-- the next restart).
function Sup:image_id(inst, name)
  local key, policy = self:image_key(inst.def, name)
  -- looked up early by Sup:start, beside the network and the container list
  local early = self.start_images and self.start_images[key]
  if early and early.done then return early.id, early.err end
  local lookup = self.lookups[key]
  if lookup then
    self:wait_until(function() return lookup.done end)
    return lookup.id, lookup.err
  end
  lookup = {}
  self.lookups[key] = lookup
  local engine = self.engine
  local ref = name:find(":[^/]*$") and name or (name .. ":latest")
  self.pulled = self.pulled or {}
  local img, err
  if policy == "always" and not self.pulled[ref] then
    -- once per image and per bring-up or reload (Sup:apply forgets), not on every restart
    local ok, perr = self:pull(inst, ref, "pull = \"always\"")
    if not ok then
      err = "pulling image " .. ref .. " failed (pull = \"always\"): " .. tostring(perr)
    else
      self.pulled[ref] = true
      img, err = engine:image_inspect(ref)
    end
  else
    img, err = engine:image_inspect(name)
    if not img and policy == "never" then
      err = "image " .. name .. " is not on the engine, and pull = \"never\""
    elseif not img then
      local ok, perr = self:pull(inst, ref, "it is not here")
      if not ok then
        err = "image " .. name .. " is not on the engine and pulling it failed: " .. tostring(perr or err)
      else
        img, err = engine:image_inspect(ref)
      end
    end
  end
  lookup.id, lookup.err, lookup.done = img and img.Id, err, true
  self.lookups[key] = nil
  if self.start_images then self.start_images[key] = lookup end
  self:changed()
  return lookup.id, lookup.err
end

-- Pulls ref, logging the engine's progress as a build's is: each layer's status when it
-- changes to a new kind, and the final status line. -> true | nil, err
function Sup:pull(inst, ref, why)
  local t0 = core.now()
  log.info(inst.key, "pull", "pulling image " .. ref .. " (" .. why .. ")")
  local last = {}
  local ok, err = self.engine:pull(ref, { on_line = function(text)
    local id, status = text:match("^(%x+): (.*)$")
    if not id then
      log.progress(inst.key, text)
    elseif last[id] ~= status:match("^(%a+)") then    -- a layer's new stage, not every byte count
      last[id] = status:match("^(%a+)")
      log.progress(inst.key, text)
    end
  end })
  if ok then log.info(inst.key, "pull", string.format("pulled %s in %.1f s", ref, core.now() - t0)) end
  return ok, err
end

-- The image a component runs, as an ID: built from its context (skipped when an image of the
-- same context identity exists) or taken from the engine's store by name.
function Sup:image_for(inst)
  local def = inst.def
  local engine = self.engine
  if def.image then return self:image_id(inst, def.image) end
  local build = def.build
  local rel = dockerfile_in(build.context, build.dockerfile)
  local extra
  if not rel then
    -- checked by mw check, and read again here: it may have changed into a FIFO since
    local text, rerr = fs.read(build.dockerfile, MAX_DOCKERFILE)
    if not text then return nil, rerr end
    rel = ".mw.Dockerfile"
    extra = { [rel] = text }
  end
  local ctx, terr = tar.pack(build.context, { extra = extra, dockerfile = rel })
  if not ctx then return nil, terr end
  local identity = core.hash(ctx .. "\0" .. rel .. "\0" .. spec.hash(build.args or {}) .. "\0" .. tostring(build.target))
  local tag = spec.image_tag(self.stack) .. ":" .. identity:sub(1, 12)
  -- components sharing a context share one build: later ones wait for the first
  while self.images[tag] == "building" do self:wait_until(function() return self.images[tag] ~= "building" end) end
  -- build.pull: the base may be newer than the built image; build again (layers the base
  -- keeps come from the cache) once per bring-up or reload (Sup:apply forgets self.pulled).
  self.pulled = self.pulled or {}
  local refresh = (build.pull or self.pull_override == "always") and not self.pulled[tag]
  if self.images[tag] and not refresh then return self.images[tag] end
  self.images[tag] = "building"
  local img = not refresh and engine:image_inspect(tag)
  if img then
    self.images[tag] = img.Id
    self:changed()
    return img.Id
  end
  local id, err = self:build(inst, build, ctx, rel, tag, refresh)
  if refresh and id then self.pulled[tag] = true end
  self.images[tag] = id
  self:changed()
  return id, err
end

function Sup:build(inst, build, ctx, rel, tag, pull)
  local engine = self.engine
  local t0 = core.now()
  log.info(inst.key, "build", "building image " .. tag)
  local id, err = engine:build {
    context_tar = ctx, tag = tag, dockerfile = rel, target = build.target, buildargs = build.args, pull = pull,
    labels = spec.labels(self.stack),
    on_line = function(text)
      text = text:gsub("%s+$", "")
      if text:find("^Step ") then log.progress(inst.key, text) end
    end,
  }
  if not id then return nil, "build failed: " .. tostring(err) end
  log.info(inst.key, "build", string.format("built %s in %s", tag, log.dur(core.now() - t0)))
  return id
end

-- ---------------------------------------------------------------------------------------------
-- containers

local function host_port(info, port)
  local ports = info.NetworkSettings and info.NetworkSettings.Ports
  local bindings = ports and ports[port .. "/tcp"]
  if type(bindings) ~= "table" then return nil end
  for _, binding in ipairs(bindings) do
    if binding.HostIp == "127.0.0.1" or binding.HostIp == "0.0.0.0" or binding.HostIp == "" then return tonumber(binding.HostPort) end
  end
  return nil
end

local function parse_started(s)
  -- "2026-11-30T01:02:03.456789Z" -> epoch seconds (UTC)
  local year, month, day, hour, minute, sec, frac = tostring(s):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)(%.?%d*)")
  if not year then return nil end
  local days = os.time { year = tonumber(year), month = tonumber(month), day = tonumber(day), hour = 12 }
  local base = os.time { year = 1970, month = 1, day = 1, hour = 12 }
  return (days - base) + tonumber(hour) * 3600 + tonumber(minute) * 60 + tonumber(sec) + (tonumber("0" .. frac) or 0)
end

-- Whether a start was refused because the holder the container joins does not run (the
-- engine: "cannot join network of a non running container"); then it is known not to.
local function holder_stopped(inst, err)
  if not (inst.holder and tostring(err):find("non running container", 1, true)) then return false end
  inst.holder.running = false
  return true
end

-- Whether the running container id started after its holder h did (so it runs in the holder's
-- present namespace): a holder restarted since made a new one, and left the container cut off.
function Sup:joined_after(id, h)
  local hs = parse_started(((h.info or {}).State or {}).StartedAt)
  if not hs then return true end       -- a holder just made (no inspect): nothing ran before it
  local info = self.engine:inspect(id)
  local cs = parse_started(((info or {}).State or {}).StartedAt)
  return cs == nil or cs >= hs
end

-- After a start (or adoption): learn the heartbeat port and pid, and begin heartbeats.
function Sup:post_start(inst, how)
  local info, err = self.engine:inspect(inst.id)
  if not info then return nil, err end
  local st = info.State or {}
  if st.Status ~= "running" then
    -- it already ended: a failure like any exit, with the engine's exit code
    return nil, "exited right after start with code " .. tostring(st.ExitCode),
      { exit_code = st.ExitCode, oom = st.OOMKilled, exited = true }
  end
  inst.pid = st.Pid
  if how ~= "adopted" then self:announce(inst) end
  inst.started_wall = parse_started(st.StartedAt) or core.time()
  inst.up_since = core.now() - math.max(0, core.time() - inst.started_wall)
  inst.quiet = nil
  inst.oom = nil
  inst.killed = nil
  local hb = inst.def.heartbeat
  self:drop_kept(inst)          -- the old heartbeat's kept connection goes with its state
  inst.hb = { misses = 0 }
  if hb and hb.port then
    -- network_mode host: the service listens on the host's own loopback
    -- a held container's ports are its holder's (mw.holder)
    inst.hb.host_port = inst.def.network_mode == "host" and hb.port
      or host_port(inst.holder and inst.holder.info or info, hb.port)
  end
  local nets = info.NetworkSettings and info.NetworkSettings.Networks or {}
  if self.network and not inst.def.network_mode and not inst.holder and not nets[self.network.name] then
    local ok, cerr = self.engine:network_connect(self.network.id, inst.id, { inst.name })
    if not ok then return nil, "cannot attach to network " .. self.network.name .. ": " .. tostring(cerr) end
    log.info(inst.key, "reattached", "was not on network " .. self.network.name .. "; reattached")
  end
  if hb then
    transition(self, inst, "started", "starting")
  else
    transition(self, inst, "started", "running")
  end
  log.info(inst.key, how, string.format("%s (%s)", how, inst.id:sub(1, 12)), { container = inst.id })
  self:start_heartbeat(inst)
  self:watch_pid(inst)
  -- sharers (network_mode service:x) of a held x joined its holder: restarted only when that
  -- holder is another than the one they joined
  local moved = inst.holder and inst.sharers_at and inst.sharers_at ~= inst.holder.id
  if inst.holder then inst.sharers_at = inst.holder.id end
  if how ~= "adopted" and inst.index == 1 and (not inst.holder or moved) then self:restart_sharers(inst) end
  if how ~= "promoted" then self:standby_sync(inst) end      -- a promotion makes the next one itself
  return true
end

-- A container that starts again gets its interfaces made again; a peer that dialled its address
-- meanwhile (the engine's port proxy on the host does, as soon as the port is mapped) waits for
-- its next ARP retry, up to a second, before its packets flow. An ARP announcement from inside
-- the container's namespace (net.announce, core/net.c) fills in such entries at once: measured
-- here, kill -9 to answering through a published port fell from ~1.3 s to ~0.7 s. Not for a
-- container on another's namespace (host, none, service:x, container:x: x's own start announces).
function Sup:announce(inst)
  -- a held container's interfaces are its holder's, made once (mw.holder): nothing new to announce
  if not self.arp_announce or inst.def.network_mode or inst.holder then return end
  -- no namespace to open: the process is gone already (it failed at once; its exit follows)
  -- or is not the container's here (another pid namespace): nothing to announce
  local ns = probe.open_netns(inst.pid, inst.id)
  if not ns then return end
  local n, err = mwnet.announce(ns)
  ns:close()
  if not n and not self.announce_warned then     -- once a process: the cause is the host's
    self.announce_warned = true
    log.warn(inst.key, "announce", "cannot announce the container's addresses (" .. tostring(err)
      .. "); peers may wait up to a second for its address after a restart")
  end
end

-- network_mode = "service:x": a container joins the network namespace of x's container when it
-- starts; once x's main process is gone that namespace has no network, so every container
-- sharing it is restarted into the new one (compose leaves them cut off).
function Sup:restart_sharers(inst)
  local want = "service:" .. inst.name
  for _, other in ipairs(self:sharers(inst)) do
    if other.id and is_up(other) and not other.handling then
      other.handling = true
      log.info(other.key, "restarting", "restarting into the network namespace of " .. inst.key ..
        ", which was " .. "restarted (network_mode " .. want .. ")", { action = "restart" })
      self:spawn(other.key .. "-rejoin", function()
        self:quiet_stop(other)
        self:restart_settle(other)
      end)
    end
  end
end

-- The instances of the components that share inst's network namespace (network_mode =
-- "service:<inst's component>"), in start order: they join instance 1 only.
function Sup:sharers(inst)
  local out = {}
  if inst.index ~= 1 then return out end
  local want = "service:" .. inst.name
  for _, name in ipairs(self.stack.order) do
    local group = self.groups[name]
    if group and group.def.network_mode == want then
      for _, other in ipairs(instances(group)) do out[#out + 1] = other end
    end
  end
  return out
end

-- Watches the container's main process through a pidfd: its exit is seen ~2 ms after it
-- happens, where the engine's die event (which carries the exit code the policy needs) takes
-- 70-100 ms. So the failure is reported at once and handled when the die event comes, or
-- after a grace of 2 s without it (the engine may be away) from an inspect.
function Sup:watch_pid(inst)
  if inst.pidw then inst.pidw:close() inst.pidw = nil end
  local id, pid = inst.id, inst.pid
  if not pid or pid <= 0 then return end
  local w = proc.watch(pid)
  if not w then return end       -- another pid namespace, or an old kernel: events only
  inst.pidw = w
  self:spawn(inst.key .. "-pid", function()
    if inst.pidw ~= w then return end      -- replaced (and closed) before this task ran
    local gone = w:wait()
    if inst.pidw == w then inst.pidw = nil end
    w:close()
    if not gone or inst.id ~= id or inst.handling or not is_up(inst) or self.stopping then return end
    inst.down = { id = id, time = core.time() }
    self:stop_heartbeat(inst)
    log[inst.def.job and "info" or "warn"](inst.key, "down",
      string.format("main process %d exited; the engine's exit code follows", pid), { container = id, pid = pid })
    -- with a frozen standby the exit is a failure now: a promotion need not wait the engine's
    -- die event (70-100 ms); the record then has no exit code
    if self:standby_ready(inst) then return self:failure(inst, "exited", { message = "main process exited" }) end
    core.sleep(2)
    if inst.id == id and not inst.handling and inst.down and inst.down.id == id and not self.stopping then
      local info, _, code = self.engine:inspect(id)
      local st = info and info.State or {}
      if code == "notfound" or st.Status == "removing" then
        self:failure(inst, "removed", {})
      else
        self:failure(inst, st.OOMKilled and "oom" or "exited", { exit_code = st.ExitCode })
      end
    end
  end)
end

-- Named volumes exist before the container that mounts them, with mw's labels (the engine
-- would create them unlabelled on its own); one made by someone else is used as it is.
function Sup:ensure_volumes(inst)
  local engine = self.engine
  self.volumes = self.volumes or {}
  for _, v in ipairs(inst.def.volumes or {}) do
    if v.type == "bind" and v.create and not fs.stat(v.source) then
      -- As compose does (and `docker run -v` did): a missing bind source becomes an empty
      -- directory; `create_host_path = false` refuses instead (at `mw check`).
      local ok, err = fs.mkdirp(v.source)
      if not ok then return nil, "cannot create bind mount source " .. v.source .. ": " .. tostring(err) end
      log.info(inst.key, "volume", "created bind mount source " .. v.source .. " (an empty directory, as compose does)")
    end
    if v.type == "volume" and v.external then
      -- never created, labelled or removed: it exists, or the start fails saying so
      if not self.volumes[v.name] then
        local info, err, code = engine:volume_inspect(v.name)
        if not info then
          return nil, code == "notfound" and ("external volume " .. v.name .. " does not exist " ..
            "(external = true: mw mounts it but never creates it; docker volume create " .. v.name .. ")")
            or ("cannot inspect external volume " .. v.name .. ": " .. tostring(err))
        end
        self.volumes[v.name] = true
      end
    elseif v.type == "volume" then
      local name = spec.instance_volume(self.stack, v, inst.index)
      if not self.volumes[name] then
        local info = engine:volume_inspect(name)
        if info then
          if not owner.owns(info.Labels) then
            log.warn(inst.key, "volume", "volume " .. name .. " exists and mw did not make it; using it as it is")
          end
        else
          local ok, err = engine:volume_create(name, spec.labels(self.stack, { ["mw.volume"] = v.name }))
          if not ok then return nil, "cannot create volume " .. name .. ": " .. tostring(err) end
          log.info(inst.key, "volume", "created volume " .. name)
        end
        self.volumes[name] = true
      end
    end
  end
  return true
end

-- The extra networks a component asks for -> list of { id =, name =, opts = } in its order.
-- mw's own are created with its labels (and the subnet, gateway and internal flag the stack's
-- `networks` declares); an external one is joined by its name, never created.
function Sup:extra_networks(inst)
  local engine = self.engine
  self.extra = self.extra or {}
  local out = {}
  for _, e in ipairs(inst.def.networks or {}) do
    local net_name, opts = spec.network_entry(e)
    local name = spec.extra_network(self.stack, net_name)
    local def = self.stack.networks and self.stack.networks[net_name] or {}
    if not self.extra[name] and def.external then
      local info, err, code = engine:network_inspect(name)
      if not info then
        return nil, code == "notfound" and ("external network " .. name .. " does not exist " ..
          "(external = true: mw joins it but never creates it; docker network create " .. name .. ")")
          or ("cannot inspect external network " .. name .. ": " .. tostring(err))
      end
      self.extra[name] = info.Id
    elseif not self.extra[name] then
      local list = engine:network_list { label = owner.filter(self.stack.name) } or {}
      for _, listed in ipairs(list) do if listed.Name == name then self.extra[name] = listed.Id end end
      if not self.extra[name] then
        local id, err = engine:network_create(name, spec.labels(self.stack, { ["mw.network"] = net_name }),
          { subnet = def.subnet, gateway = def.gateway, internal = def.internal or nil })
        if not id then return nil, "cannot create network " .. name .. ": " .. tostring(err) end
        log.info(inst.key, "network", "created network " .. name .. (def.subnet and (" (subnet " .. def.subnet .. ")") or ""))
        self.extra[name] = id
      end
    end
    out[#out + 1] = { id = self.extra[name], name = name, opts = opts }
  end
  return out
end

-- Waits for a removal someone else started (`mw kill`: the engine answers ours with 409
-- "already in progress") to end, since the name stays taken until then: true once it is gone,
-- false if it ended otherwise or took longer than REMOVAL_WAIT.
function Sup:await_removal(id)
  local deadline, delay = core.now() + REMOVAL_WAIT, 0.01
  while true do
    local info, _, code = self.engine:inspect(id)
    if not info then return code == "notfound" end
    if (info.State or {}).Status ~= "removing" or core.now() >= deadline then return false end
    core.sleep(delay)
    delay = math.min(delay * 2, 0.2)
  end
end

-- Connects container id to the extra networks nets (Sup:extra_networks) under inst's name and
-- aliases -> true | nil, err.
function Sup:connect_networks(inst, id, nets)
  for _, net in ipairs(nets) do
    local aliases, opts = { inst.name }, net.opts or {}
    for _, a in ipairs(opts.aliases or {}) do aliases[#aliases + 1] = a end
    local ok, cerr = self.engine:network_connect(net.id, id, aliases, { ipv4_address = opts.ipv4_address })
    if not ok then return nil, "cannot connect to network " .. net.name .. ": " .. tostring(cerr) end
  end
  return true
end

-- Creates a fresh container for inst (not started), removing a leftover of ours first; a held
-- one (hold: spec.container's third result) joins its holder, made or started first (ahead: a
-- new holder's start takes its turn, Sup:holder_turn).
function Sup:create_only(inst, body, hold, ahead)
  local engine = self.engine
  local name = spec.container_name(self.stack, inst.key)
  local vok, verr = self:ensure_volumes(inst)
  if not vok then return nil, verr end
  local nets, nerr = self:extra_networks(inst)
  if not nets then return nil, nerr end
  local h
  if hold then
    -- a new holder starts while the container is created (a create needs only its id)
    local herr
    h, herr = self:ensure_holder(inst, hold, nil, true, ahead)
    if ahead and not (h and h.pending) then self:ahead_unmark(inst) end     -- no turn to ask for
    if not h then return nil, herr end
    body.HostConfig.NetworkMode = "container:" .. h.id
    nets = {}     -- the holder's
  end
  local id, err, code = engine:create(name, body)
  if not id and code == "conflict" then
    -- a leftover of ours under the name: remove it if it is labelled, never otherwise
    local list = engine:list { label = owner.filter(self.stack.name, "mw.config-hash"), name = { "^/" .. name .. "$" } }
    local removed = false
    for _, listed in ipairs(list or {}) do
      for _, cname in ipairs(listed.Names or {}) do
        if cname == "/" .. name then
          inst.quiet = listed.Id
          local _, _, rcode = engine:remove(listed.Id, { force = true })
          if rcode == "conflict" then self:await_removal(listed.Id) end
          removed = true
        end
      end
    end
    if not removed then
      return nil, "the name " .. name .. " is taken by a container mw does not own"
    end
    id, err = engine:create(name, body)
  end
  if h and h.pending then
    local ready, herr = self:holder_ready(h)
    if not ready then return nil, herr end
  end
  if not id then return nil, err end
  inst.id = id
  -- no longer held (hold_network = false now): the old holder goes with the old container
  if not hold then self:drop_holder(inst, "it no longer holds its network") end
  return self:connect_networks(inst, id, nets)
end

-- Creates and starts a fresh container for inst, removing any old one first.
function Sup:create_and_start(inst, body, hold)
  local ok, err = self:create_only(inst, body, hold)
  if not ok then return nil, err end
  local sok, serr = self.engine:start(inst.id)
  if not sok then return nil, serr end
  return true
end

-- Whether any dependency of inst is not yet where inst may start.
function Sup:deps_pending(inst)
  for dep, cond in pairs(inst.def.depends_on or {}) do
    local group = self.groups[dep]
    if not group then return true end
    for _, dep_inst in pairs(group.instances) do
      local st = dep_inst.state
      if cond == "healthy" then
        if st ~= "healthy" and not (st == "running" and not dep_inst.def.heartbeat) then return true end
      elseif not is_up(dep_inst) and st ~= "stopped" then
        return true
      end
    end
  end
  return false
end

-- While inst waits for its dependencies at a cold start with nothing to adopt, its container
-- is created already (as docker compose creates before it starts), so when they are ready
-- only the start is left on the chain's critical path -> the definition's hash, or nil.
function Sup:precreate(inst, existing, img)
  if (existing and #existing > 0) or not self:deps_pending(inst) then return nil end
  local body, hash, hold = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
  inst.hash = hash
  local _ <close> = hold and self:ahead_mark(inst) or nil
  local ok = self:create_only(inst, body, hold, true)
  if not ok then inst.id = nil return nil end     -- ensure() tries again and says why
  return hash
end

-- Brings inst to a running container with the current definition: adopt, start or create.
function Sup:ensure(inst, existing, img)
  local engine = self.engine
  if not img then
    local ierr
    img, ierr = self:image_for(inst)
    if not img then return nil, ierr end
  end
  local body, hash, hold = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
  inst.hash = hash
  -- a held candidate must join this instance's holder: looked up (and made ready) first; with
  -- no candidate, create_only makes the holder beside the container
  local h
  for _, listed in ipairs(hold and existing or {}) do
    if (listed.Labels or {})["mw.config-hash"] == hash and not h then
      local herr
      h, herr = self:ensure_holder(inst, hold)
      if not h then return nil, herr end
    end
  end
  local keep, stale = nil, {}
  for _, listed in ipairs(existing or {}) do
    local labels = listed.Labels or {}
    -- a held one must be joined to this holder (a holder made again is a new namespace), and
    -- one that runs must have started after the holder did: one the holder's restart (by hand,
    -- or by ensure_holder just now) left in the old namespace is cut off
    local joined = not h or (listed.HostConfig or {}).NetworkMode == "container:" .. h.id
    if joined and h and listed.State == "running" and labels["mw.config-hash"] == hash then
      joined = not h.restarted and self:joined_after(listed.Id, h)
    end
    if not keep and labels["mw.config-hash"] == hash and joined and listed.State ~= "dead" and listed.State ~= "removing" then
      keep = listed
    else
      stale[#stale + 1] = listed
    end
  end
  for _, listed in ipairs(stale) do
    inst.quiet = listed.Id
    local ok, rerr = engine:remove(listed.Id, { force = true })
    if not ok then return nil, "cannot remove the old container: " .. tostring(rerr) end
    log.info(inst.key, "removed", "removed outdated container " .. listed.Id:sub(1, 12))
  end
  if not hold then
    -- kept as it is, joined to a holder (a standby asked for since: fields "hold_network"):
    -- the holder stays with it; else a holder left over goes
    local found = self.found_holders and self.found_holders[inst.key]
    if keep and found and (keep.HostConfig or {}).NetworkMode == "container:" .. found.Id then
      self.found_holders[inst.key] = nil
      if found.State ~= "running" then engine:start(found.Id) end
      local hok, herr = self:holder_up(inst, found.Id, spec.holder_name(self.stack, inst.key),
        (found.Labels or {})["mw.holder-hash"], "kept")
      if not hok then return nil, herr end
    else
      self:drop_holder(inst, "it no longer holds its network")
    end
  end
  if keep then
    inst.id = keep.Id
    local name = spec.container_name(self.stack, inst.key)
    if keep.Names and keep.Names[1] ~= "/" .. name then
      engine:rename(keep.Id, name)      -- a replacement interrupted before its rename
    end
    if keep.State == "running" then
      return self:post_start(inst, "adopted")
    end
    if keep.State == "paused" then engine:unpause(keep.Id) return self:post_start(inst, "adopted") end
    if inst.def.job and keep.State == "exited" then
      -- a job whose container of this very definition exited 0 is done: not run again
      local info = engine:inspect(keep.Id)
      local st = info and info.State or {}
      if st.Status == "exited" and st.ExitCode == 0 and not st.OOMKilled then
        self:complete(inst, "already")
        return true
      end
    end
    local ok, serr, scode = engine:start(keep.Id)
    if ok then return self:post_start(inst, "started") end
    -- its holder stopped meanwhile: a new container, in a holder made or started again
    if holder_stopped(inst, serr) then return self:recreate(inst) end
    if scode ~= "notfound" then return nil, serr end
  end
  local ok, err = self:create_and_start(inst, body, hold)
  if not ok then return nil, err end
  return self:post_start(inst, "started")
end

-- The task that brings one component up: waits for its dependencies, then ensure().
function Sup:bring_up(inst, existing)
  transition(self, inst, "bring_up", "waiting")
  -- images first: builds run in parallel, not one dependency level at a time
  local img, ierr = self:image_for(inst)
  if self.start_images and not inst.brought_up then
    -- the start's early lookups serve each instance's first bring-up only
    self.start_left = (self.start_left or 1) - 1
    if self.start_left <= 0 then self.start_images, self.start_left = nil, nil end
  end
  local pre, pre_id
  if img and not self.stopping then
    pre = self:precreate(inst, existing, img)
    pre_id = pre and inst.id
  end
  self:wait_deps(inst)
  if self.stopping or inst.state == "gone" then return end
  local ok, err, info = nil, ierr, nil
  -- the instance's first create and start: the stack is coming up (see Sup:coming_up)
  local first = not inst.brought_up
  inst.brought_up = true
  inst.first_start = first or nil
  if img then
    if pre and inst.id == pre_id then
      -- created while waiting: start it if its definition is still the one it was made with
      local _, hash = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
      local listed = { Id = pre_id, State = "created", Names = { "/" .. spec.container_name(self.stack, inst.key) },
                       Labels = { ["mw.config-hash"] = pre },
                       HostConfig = { NetworkMode = inst.holder and ("container:" .. inst.holder.id) } }
      existing = { listed }
      if hash ~= pre then log.info(inst.key, "precreate", "its definition changed while it waited; recreating") end
    end
    ok, err, info = self:ensure(inst, existing, img)
  end
  if first then
    inst.first_start = nil
    self.first_start_end = core.now()
  end
  if not ok then return self:start_failed(inst, err, info) end
  self:settle(inst)
end

-- Starts the same container again (stopping it first if it still runs, hung or paused);
-- falls back to a new one when it is gone.
function Sup:restart_container(inst)
  -- a held container whose holder is gone joins a new one: a new container (mw.holder)
  if not inst.id or (inst.holder and not inst.holder.running) then return self:recreate(inst) end
  local engine = self.engine
  local status = "exited"
  if inst.dead_id ~= inst.id then
    local info = engine:inspect(inst.id)
    if not info then return self:recreate(inst) end
    status = info.State and info.State.Status
  end
  inst.dead_id = nil
  if status == "paused" or status == "running" or status == "restarting" then
    inst.quiet = inst.id
    if status == "paused" then engine:unpause(inst.id) end
    engine:kill(inst.id, "KILL")
  end
  local ok, err, code = engine:start(inst.id)
  if ok then return self:post_start(inst, "restarted") end
  -- removed meanwhile, or being removed (removed by the time the start was refused): a new one
  if code == "notfound" or tostring(err):find("marked for removal", 1, true) then return self:recreate(inst) end
  -- its holder stopped meanwhile: a new container, in a holder made or started again
  if holder_stopped(inst, err) then return self:recreate(inst) end
  return nil, err
end

function Sup:recreate(inst)
  local engine = self.engine
  if inst.id then
    inst.quiet = inst.id
    local _, _, code = engine:remove(inst.id, { force = true })
    if code == "conflict" then self:await_removal(inst.id) end
    inst.id = nil
  end
  local img, ierr = self:image_for(inst)
  if not img then return nil, ierr end
  local body, hash, hold = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
  inst.hash = hash
  local ok, err = self:create_and_start(inst, body, hold)
  if not ok then return nil, err end
  return self:post_start(inst, "recreated")
end

-- Replaces inst's container with one of its new definition: start-first (new healthy, then old
-- removed: no downtime) when nothing it holds is exclusive, else stop-first.
function Sup:replace(inst, img)
  local engine = self.engine
  local body, hash, hold = spec.container(self.stack, inst.def, img, inst.index, inst.overrides, self.hb_via)
  local name = spec.container_name(self.stack, inst.key)
  local old = inst.id
  local t0 = core.now()
  if spec.start_first(inst.def) and old then
    local tmp = name .. "-next-" .. hash:sub(1, 8)
    -- a held one comes with a holder of its own beside the old (their ports would clash in one)
    local th, id, err
    if hold then
      th, err = self:ensure_holder(inst, hold, tmp .. ".net")
      if th then body.HostConfig.NetworkMode = "container:" .. th.id end
    end
    if th or not hold then id, err = engine:create(tmp, body) end
    if not id and th then self:drop_holder(inst, "the new container was not made", th) end
    if id then
      local ok, serr = engine:start(id)
      local port, pid
      if ok then
        local info = engine:inspect(id)
        -- an exec heartbeat probes the container itself: no port to find (false, not nil)
        if inst.def.heartbeat.port then port = info and host_port(th and th.info or info, inst.def.heartbeat.port)
        else port = false end
        pid = info and info.State and info.State.Pid
      end
      local healthy, why = nil, serr
      if ok and (port ~= nil or self.hb_via == "netns") then
        local within = (inst.def.rollout or {}).timeout or math.max(inst.def.heartbeat.grace, 5)
        healthy, why = self:wait_healthy(inst, id, port, core.now() + within, pid)
      end
      if not healthy then
        engine:remove(id, { force = true })
        if th then self:drop_holder(inst, "its new container was not healthy", th) end
        log.error(inst.key, "replace_failed", "the new container did not become healthy (" .. tostring(why)
          .. "); the old one keeps serving")
        return nil, "not healthy: " .. tostring(why)
      end
      -- switch: heartbeats move to the new container, then the old one goes (and its holder)
      self:stop_heartbeat(inst)
      inst.quiet = old
      local old_holder = inst.holder
      inst.id, inst.hash, inst.holder = id, hash, th
      engine:remove(old, { force = true })
      local freed = not old_holder or self:drop_holder(inst, "replaced", old_holder)
      engine:rename(id, name)
      if th and freed then
        local hname = spec.holder_name(self.stack, inst.key)
        local rok, rerr = engine:rename(th.id, hname)
        if rok then th.name = hname
        else log.warn(inst.key, "holder", "cannot rename its network holder to " .. hname .. ": " .. tostring(rerr)) end
      end
      local pok, perr, pinfo = self:post_start(inst, "replaced")
      if not pok then self:start_failed(inst, perr, pinfo) return nil, perr end
      log.info(inst.key, "replace", string.format("replaced start-first in %s", log.dur(core.now() - t0)))
      return true
    end
    log.warn(inst.key, "replace", "cannot start the new container beside the old one (" .. tostring(err) .. "); stop-first")
  end
  self:stop_heartbeat(inst)
  if inst.runner and inst.runner ~= core.current() then core.cancel(inst.runner) end
  inst.runner, inst.pending = nil, nil
  inst.handling = true
  if old then
    inst.quiet = old
    engine:stop(old, math.ceil(inst.def.stop_grace or 10))
    engine:remove(old, { force = true })
    inst.id = nil
  end
  transition(self, inst, "replace", "restarting")
  local ok, err = self:create_and_start(inst, body, hold)
  inst.hash = hash
  if not ok then self:start_failed(inst, err) return nil, err end
  local pok, perr, pinfo = self:post_start(inst, "replaced")
  if not pok then self:start_failed(inst, perr, pinfo) return nil, perr end
  self:settle(inst)
  log.info(inst.key, "replace", string.format("replaced stop-first in %s", log.dur(core.now() - t0)))
  return true
end

return Sup
