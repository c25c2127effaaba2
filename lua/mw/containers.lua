-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other. This one: the network, images, volumes and
-- containers (create, start, adopt, restart in place, recreate, replace).
local core = require "mw.core"
local proc = require "mw.proc"
local tar = require "mw.tar"
local fs = require "mw.fs"
local spec = require "mw.spec"
local log = require "mw.log"
local owner = require "mw.owner"
local instance = require "mw.instance"

local transition, is_up = instance.transition, instance.is_up

local Sup = {}

local REMOVAL_WAIT = 10         -- seconds to wait for a removal someone else started

-- ---------------------------------------------------------------------------------------------
-- the network and images

function Sup:ensure_network()
  local e = self.engine
  local name = spec.network_name(self.stack)
  local list, err = e:network_list { label = owner.filter(self.stack.name) }
  if not list then return nil, err end
  -- two creates racing (an mw killed mid-create) can leave two networks of one name on 20.10:
  -- keep the oldest, remove the others while they are empty
  local same = {}
  for _, n in ipairs(list) do
    if n.Name == name then same[#same + 1] = n end
  end
  table.sort(same, function(a, b) return tostring(a.Created) < tostring(b.Created) end)
  for i = 2, #same do
    if e:network_remove(same[i].Id) then log.info(nil, "network", "removed a duplicate network " .. name) end
  end
  if same[1] then
    self.network = { id = same[1].Id, name = name }
    return self.network
  end
  local id, cerr, code = e:network_create(name, spec.labels(self.stack))
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

-- An image name to its ID, pulling it when it is not here. Everyone asking for one name while
-- a lookup is under way shares it: a cold start of N components on one image makes one
-- inspect, not N. Nothing is kept afterwards (a name may point elsewhere by the next restart).
function Sup:image_id(c, name)
  local q = self.lookups[name]
  if q then
    self:wait_until(function() return q.done end)
    return q.id, q.err
  end
  q = {}
  self.lookups[name] = q
  local e = self.engine
  local img, err = e:image_inspect(name)
  if not img then
    local ref = name:find(":[^/]*$") and name or (name .. ":latest")
    log.info(c.key, "pull", "image " .. ref .. " is not here; pulling it")
    local ok, perr = e:pull(ref)
    if not ok then
      err = "image " .. name .. " is not on the engine and pulling it failed: " .. tostring(perr or err)
    else
      img, err = e:image_inspect(ref)
    end
  end
  q.id, q.err, q.done = img and img.Id, err, true
  self.lookups[name] = nil
  self:changed()
  return q.id, q.err
end

-- The image a component runs, as an ID: built from its context (skipped when an image of the
-- same context identity exists) or taken from the engine's store by name.
function Sup:image_for(c)
  local def = c.def
  local e = self.engine
  if def.image then return self:image_id(c, def.image) end
  local b = def.build
  local rel = dockerfile_in(b.context, b.dockerfile)
  local extra
  if not rel then
    -- checked by mw check, and read again here: it may have changed into a FIFO since
    local text, rerr = fs.read(b.dockerfile, MAX_DOCKERFILE)
    if not text then return nil, rerr end
    rel = ".mw.Dockerfile"
    extra = { [rel] = text }
  end
  local ctx, terr = tar.pack(b.context, { extra = extra, dockerfile = rel })
  if not ctx then return nil, terr end
  local identity = core.hash(ctx .. "\0" .. rel .. "\0" .. spec.hash(b.args or {}) .. "\0" .. tostring(b.target))
  local tag = spec.image_tag(self.stack) .. ":" .. identity:sub(1, 12)
  -- components sharing a context share one build: later ones wait for the first
  while self.images[tag] == "building" do self:wait_until(function() return self.images[tag] ~= "building" end) end
  if self.images[tag] then return self.images[tag] end
  self.images[tag] = "building"
  local img = e:image_inspect(tag)
  if img then
    self.images[tag] = img.Id
    self:changed()
    return img.Id
  end
  local id, err = self:build(c, b, ctx, rel, tag)
  self.images[tag] = id
  self:changed()
  return id, err
end

function Sup:build(c, b, ctx, rel, tag)
  local e = self.engine
  local t0 = core.now()
  log.info(c.key, "build", "building image " .. tag)
  local id, err = e:build {
    context_tar = ctx, tag = tag, dockerfile = rel, target = b.target, buildargs = b.args,
    labels = spec.labels(self.stack),
    on_line = function(text)
      text = text:gsub("%s+$", "")
      if text:find("^Step ") then log.progress(c.key, text) end
    end,
  }
  if not id then return nil, "build failed: " .. tostring(err) end
  log.info(c.key, "build", string.format("built %s in %s", tag, log.dur(core.now() - t0)))
  return id
end

-- ---------------------------------------------------------------------------------------------
-- containers

local function host_port(info, port)
  local ports = info.NetworkSettings and info.NetworkSettings.Ports
  local b = ports and ports[port .. "/tcp"]
  if type(b) ~= "table" then return nil end
  for _, x in ipairs(b) do
    if x.HostIp == "127.0.0.1" or x.HostIp == "0.0.0.0" or x.HostIp == "" then return tonumber(x.HostPort) end
  end
  return nil
end

local function parse_started(s)
  -- "2026-11-30T01:02:03.456789Z" -> epoch seconds (UTC)
  local y, mo, d, h, mi, sec, frac = tostring(s):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)(%.?%d*)")
  if not y then return nil end
  local days = os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = 12 }
  local base = os.time { year = 1970, month = 1, day = 1, hour = 12 }
  return (days - base) + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) + (tonumber("0" .. frac) or 0)
end

-- After a start (or adoption): learn the heartbeat port and pid, and begin heartbeats.
function Sup:post_start(c, how)
  local info, err = self.engine:inspect(c.id)
  if not info then return nil, err end
  local st = info.State or {}
  if st.Status ~= "running" then
    -- it already ended: a failure like any exit, with the engine's exit code
    return nil, "exited right after start with code " .. tostring(st.ExitCode),
      { exit_code = st.ExitCode, oom = st.OOMKilled, exited = true }
  end
  c.pid = st.Pid
  c.started_wall = parse_started(st.StartedAt) or core.time()
  c.up_since = core.now() - math.max(0, core.time() - c.started_wall)
  c.quiet = nil
  c.oom = nil
  local hb = c.def.heartbeat
  c.hb = { misses = 0 }
  if hb and hb.port then c.hb.host_port = host_port(info, hb.port) end
  local nets = info.NetworkSettings and info.NetworkSettings.Networks or {}
  if self.network and not nets[self.network.name] then
    local ok, cerr = self.engine:network_connect(self.network.id, c.id, { c.name })
    if not ok then return nil, "cannot attach to network " .. self.network.name .. ": " .. tostring(cerr) end
    log.info(c.key, "reattached", "was not on network " .. self.network.name .. "; reattached")
  end
  if hb then
    transition(self, c, "started", "starting")
  else
    transition(self, c, "started", "running")
  end
  log.info(c.key, how, string.format("%s (%s)", how, c.id:sub(1, 12)), { container = c.id })
  self:start_heartbeat(c)
  self:watch_pid(c)
  return true
end

-- Watches the container's main process through a pidfd: its exit is seen ~2 ms after it
-- happens, where the engine's die event (which carries the exit code the policy needs) takes
-- 70-100 ms. So the failure is reported at once and handled when the die event comes, or
-- after a grace of 2 s without it (the engine may be away) from an inspect.
function Sup:watch_pid(c)
  if c.pidw then c.pidw:close() c.pidw = nil end
  local id, pid = c.id, c.pid
  if not pid or pid <= 0 then return end
  local w = proc.watch(pid)
  if not w then return end       -- another pid namespace, or an old kernel: events only
  c.pidw = w
  self:spawn(c.key .. "-pid", function()
    if c.pidw ~= w then return end      -- replaced (and closed) before this task ran
    local gone = w:wait()
    if c.pidw == w then c.pidw = nil end
    w:close()
    if not gone or c.id ~= id or c.handling or not is_up(c) or self.stopping then return end
    c.down = { id = id, time = core.time() }
    self:stop_heartbeat(c)
    log.warn(c.key, "down", string.format("main process %d exited; the engine's exit code follows", pid),
      { container = id, pid = pid })
    core.sleep(2)
    if c.id == id and not c.handling and c.down and c.down.id == id and not self.stopping then
      local info, _, code = self.engine:inspect(id)
      local st = info and info.State or {}
      if code == "notfound" or st.Status == "removing" then
        self:failure(c, "removed", {})
      else
        self:failure(c, st.OOMKilled and "oom" or "exited", { exit_code = st.ExitCode })
      end
    end
  end)
end

-- Named volumes exist before the container that mounts them, with mw's labels (the engine
-- would create them unlabelled on its own); one made by someone else is used as it is.
function Sup:ensure_volumes(c)
  local e = self.engine
  self.volumes = self.volumes or {}
  for _, v in ipairs(c.def.volumes or {}) do
    if v.type == "volume" then
      local name = spec.instance_volume(self.stack, v, c.index)
      if not self.volumes[name] then
        local info = e:volume_inspect(name)
        if info then
          if not owner.owns(info.Labels) then
            log.warn(c.key, "volume", "volume " .. name .. " exists and mw did not make it; using it as it is")
          end
        else
          local ok, err = e:volume_create(name, spec.labels(self.stack, { ["mw.volume"] = v.name }))
          if not ok then return nil, "cannot create volume " .. name .. ": " .. tostring(err) end
          log.info(c.key, "volume", "created volume " .. name)
        end
        self.volumes[name] = true
      end
    end
  end
  return true
end

-- The extra networks a component asks for, created with mw's labels -> { name = id }.
function Sup:extra_networks(c)
  local e = self.engine
  self.extra = self.extra or {}
  local out = {}
  for _, n in ipairs(c.def.networks or {}) do
    local name = spec.extra_network(self.stack, n)
    if not self.extra[name] then
      local list = e:network_list { label = owner.filter(self.stack.name) } or {}
      for _, x in ipairs(list) do if x.Name == name then self.extra[name] = x.Id end end
      if not self.extra[name] then
        local id, err = e:network_create(name, spec.labels(self.stack, { ["mw.network"] = n }))
        if not id then return nil, "cannot create network " .. name .. ": " .. tostring(err) end
        log.info(c.key, "network", "created network " .. name)
        self.extra[name] = id
      end
    end
    out[name] = self.extra[name]
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

-- Creates and starts a fresh container for c, removing any old one first.
function Sup:create_and_start(c, body)
  local e = self.engine
  local name = spec.container_name(self.stack, c.key)
  local vok, verr = self:ensure_volumes(c)
  if not vok then return nil, verr end
  local nets, nerr = self:extra_networks(c)
  if not nets then return nil, nerr end
  local id, err, code = e:create(name, body)
  if not id and code == "conflict" then
    -- a leftover of ours under the name: remove it if it is labelled, never otherwise
    local list = e:list { label = owner.filter(self.stack.name, "mw.config-hash"), name = { "^/" .. name .. "$" } }
    local removed = false
    for _, x in ipairs(list or {}) do
      for _, n in ipairs(x.Names or {}) do
        if n == "/" .. name then
          c.quiet = x.Id
          local _, _, rcode = e:remove(x.Id, { force = true })
          if rcode == "conflict" then self:await_removal(x.Id) end
          removed = true
        end
      end
    end
    if not removed then
      return nil, "the name " .. name .. " is taken by a container mw does not own"
    end
    id, err = e:create(name, body)
  end
  if not id then return nil, err end
  c.id = id
  for _, netid in pairs(nets) do
    local ok, cerr = e:network_connect(netid, id, { c.name })
    if not ok then return nil, "cannot connect to an extra network: " .. tostring(cerr) end
  end
  local ok, serr = e:start(id)
  if not ok then return nil, serr end
  return true
end

-- Brings c to a running container with the current definition: adopt, start or create.
function Sup:ensure(c, existing, img)
  local e = self.engine
  if not img then
    local ierr
    img, ierr = self:image_for(c)
    if not img then return nil, ierr end
  end
  local body, hash = spec.container(self.stack, c.def, img, c.index, c.overrides)
  c.hash = hash
  local keep, stale = nil, {}
  for _, x in ipairs(existing or {}) do
    local labels = x.Labels or {}
    if not keep and labels["mw.config-hash"] == hash and x.State ~= "dead" and x.State ~= "removing" then
      keep = x
    else
      stale[#stale + 1] = x
    end
  end
  for _, x in ipairs(stale) do
    c.quiet = x.Id
    local ok, rerr = e:remove(x.Id, { force = true })
    if not ok then return nil, "cannot remove the old container: " .. tostring(rerr) end
    log.info(c.key, "removed", "removed outdated container " .. x.Id:sub(1, 12))
  end
  if keep then
    c.id = keep.Id
    local name = spec.container_name(self.stack, c.key)
    if keep.Names and keep.Names[1] ~= "/" .. name then
      e:rename(keep.Id, name)      -- a replacement interrupted before its rename
    end
    if keep.State == "running" then
      return self:post_start(c, "adopted")
    end
    if keep.State == "paused" then e:unpause(keep.Id) return self:post_start(c, "adopted") end
    local ok, serr, scode = e:start(keep.Id)
    if ok then return self:post_start(c, "started") end
    if scode ~= "notfound" then return nil, serr end
  end
  local ok, err = self:create_and_start(c, body)
  if not ok then return nil, err end
  return self:post_start(c, "started")
end

-- The task that brings one component up: waits for its dependencies, then ensure().
function Sup:bring_up(c, existing)
  transition(self, c, "bring_up", "waiting")
  -- images first: builds run in parallel, not one dependency level at a time
  local img, ierr = self:image_for(c)
  self:wait_deps(c)
  if self.stopping or c.state == "gone" then return end
  local ok, err, info = nil, ierr, nil
  -- the instance's first create and start: the stack is coming up (see Sup:coming_up)
  local first = not c.brought_up
  c.brought_up = true
  c.first_start = first or nil
  if img then ok, err, info = self:ensure(c, existing, img) end
  if first then
    c.first_start = nil
    self.first_start_end = core.now()
  end
  if not ok then return self:start_failed(c, err, info) end
  self:settle(c)
end

-- Starts the same container again (stopping it first if it still runs, hung or paused);
-- falls back to a new one when it is gone.
function Sup:restart_container(c)
  if not c.id then return self:recreate(c) end
  local e = self.engine
  local status = "exited"
  if c.dead_id ~= c.id then
    local info = e:inspect(c.id)
    if not info then return self:recreate(c) end
    status = info.State and info.State.Status
  end
  c.dead_id = nil
  if status == "paused" or status == "running" or status == "restarting" then
    c.quiet = c.id
    if status == "paused" then e:unpause(c.id) end
    e:kill(c.id, "KILL")
  end
  local ok, err, code = e:start(c.id)
  if ok then return self:post_start(c, "restarted") end
  -- removed meanwhile, or being removed (removed by the time the start was refused): a new one
  if code == "notfound" or tostring(err):find("marked for removal", 1, true) then return self:recreate(c) end
  return nil, err
end

function Sup:recreate(c)
  local e = self.engine
  if c.id then
    c.quiet = c.id
    local _, _, code = e:remove(c.id, { force = true })
    if code == "conflict" then self:await_removal(c.id) end
    c.id = nil
  end
  local img, ierr = self:image_for(c)
  if not img then return nil, ierr end
  local body, hash = spec.container(self.stack, c.def, img, c.index, c.overrides)
  c.hash = hash
  local ok, err = self:create_and_start(c, body)
  if not ok then return nil, err end
  return self:post_start(c, "recreated")
end

-- Replaces c's container with one of its new definition: start-first (new healthy, then old
-- removed: no downtime) when nothing it holds is exclusive, else stop-first.
function Sup:replace(c, img)
  local e = self.engine
  local body, hash = spec.container(self.stack, c.def, img, c.index, c.overrides)
  local name = spec.container_name(self.stack, c.key)
  local old = c.id
  local t0 = core.now()
  if spec.start_first(c.def) and old then
    local tmp = name .. "-next-" .. hash:sub(1, 8)
    local id, err = e:create(tmp, body)
    if id then
      local ok, serr = e:start(id)
      local port
      if ok then
        local info = e:inspect(id)
        port = info and host_port(info, c.def.heartbeat.port)
      end
      local healthy, why = nil, serr
      if ok and port then
        healthy, why = self:wait_healthy(c, id, port, core.now() + ((c.def.rollout or {}).timeout or math.max(c.def.heartbeat.grace, 5)))
      end
      if not healthy then
        e:remove(id, { force = true })
        log.error(c.key, "replace_failed", "the new container did not become healthy (" .. tostring(why)
          .. "); the old one keeps serving")
        return nil, "not healthy: " .. tostring(why)
      end
      -- switch: heartbeats move to the new container, then the old one goes
      self:stop_heartbeat(c)
      c.quiet = old
      c.id, c.hash = id, hash
      e:remove(old, { force = true })
      e:rename(id, name)
      local pok, perr, pinfo = self:post_start(c, "replaced")
      if not pok then self:start_failed(c, perr, pinfo) return nil, perr end
      log.info(c.key, "replace", string.format("replaced start-first in %s", log.dur(core.now() - t0)))
      return true
    end
    log.warn(c.key, "replace", "cannot start the new container beside the old one (" .. tostring(err) .. "); stop-first")
  end
  self:stop_heartbeat(c)
  if c.runner and c.runner ~= core.current() then core.cancel(c.runner) end
  c.runner, c.pending = nil, nil
  c.handling = true
  if old then
    c.quiet = old
    e:stop(old, math.ceil(c.def.stop_grace or 10))
    e:remove(old, { force = true })
    c.id = nil
  end
  transition(self, c, "replace", "restarting")
  local ok, err = self:create_and_start(c, body)
  c.hash = hash
  if not ok then self:start_failed(c, err) return nil, err end
  local pok, perr, pinfo = self:post_start(c, "replaced")
  if not pok then self:start_failed(c, perr, pinfo) return nil, perr end
  self:settle(c)
  log.info(c.key, "replace", string.format("replaced stop-first in %s", log.dur(core.now() - t0)))
  return true
end

return Sup
