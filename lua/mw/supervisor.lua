-- The supervisor of one stack: brings components up in dependency order, watches them through
-- the engine's events and heartbeats, and handles each failure by the component's policy.
local core = require "mw.core"
local probe = require "mw.probe"
local proc = require "mw.proc"
local tar = require "mw.tar"
local fs = require "mw.fs"
local cjson = require "cjson"
local spec = require "mw.spec"
local log = require "mw.log"
local policy = require "mw.policy"
local owner = require "mw.owner"
local duration = require "mw.duration"

local M = {}
local Sup = {}
Sup.__index = Sup

local ACTIONS = { restart = true, recreate = true, reconnect = true, restart_dependents = true,
                  restart_stack = true, give_up = true, ignore = true }
local POLICY_BUDGET = { instructions = 1e6, seconds = 0.1 }
local MAX_CHANGES = 8       -- entries of a policy's third result looked at
local MAX_DELAY = 24 * 3600
local REMOVAL_WAIT = 10         -- seconds to wait for a removal someone else started

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
  local key = i == 1 and g.name or (g.name .. "-" .. i)
  local c = { name = g.name, index = i, key = key, group = g, def = g.def, state = "pending",
              restarts = 0, history = {}, hb = {}, probes = {} }
  self.comps[key] = c
  g.instances[i] = c
  return c
end

-- The instances of a group in index order.
local function instances(g)
  local out = {}
  for i in pairs(g.instances) do out[#out + 1] = i end
  table.sort(out)
  for k, i in ipairs(out) do out[k] = g.instances[i] end
  return out
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

local function set_state(self, c, state)
  if c.state == state then return end
  c.state = state
  c.state_since = core.time()
  self:changed(c)
end

local function is_up(c)
  return c.state == "running" or c.state == "healthy" or c.state == "starting" or c.state == "unhealthy"
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
    set_state(self, c, "starting")
  else
    set_state(self, c, "running")
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
  set_state(self, c, "waiting")
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

-- What user code returned, for a message: never tostring, pairs or # on it, since a metamethod
-- would run outside any budget.
local function shown(v)
  local t = type(v)
  if t == "string" then
    return (string.format("%q", #v > 40 and v:sub(1, 40) .. "..." or v):gsub("\\\n", "\\n"))
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  end
  return "(" .. t .. ")"
end

-- The error core.budget reported for user code, cut to one reasonable line.
local function failure_text(e)
  if type(e) ~= "string" then return shown(e) end
  e = e:match("^[^\n]*")
  return #e > 200 and e:sub(1, 200) .. "..." or e
end

-- ---------------------------------------------------------------------------------------------
-- heartbeats

local function probe_http(_, c, hb)
  local port = c.hb.host_port
  if not port then return false, "heartbeat port " .. tostring(hb.port) .. " is not published" end
  local res, err = probe.get(port, hb.path, hb.timeout)
  if not res then return false, err end
  if res.status < 200 or res.status >= 400 then return false, "HTTP " .. res.status end
  c.hb.body = res.body      -- autoscale decisions may read it
  if hb.check then
    local ok, good, why = core.budget(hb.check, POLICY_BUDGET, res.body)
    if not ok then
      if not c.hb.check_failed then
        c.hb.check_failed = true
        log.warn(c.key, "check_error", "heartbeat check failed (" .. failure_text(good) .. "); the heartbeat counts as failed")
      end
      return false, "check failed: " .. failure_text(good)
    end
    c.hb.check_failed = nil
    if not good then
      return false, type(why) == "string" and (#why > 200 and why:sub(1, 200) .. "..." or why) or "check said unhealthy"
    end
  end
  return true
end

local function probe_tcp(_, c, hb)
  local port = c.hb.host_port
  if not port then return false, "port " .. tostring(hb.port) .. " is not published" end
  return probe.tcp(port, hb)
end

local function probe_exec(self, c, hb)
  local code, out = self.engine:exec(c.id, hb.exec, { timeout = hb.timeout })
  if code == nil then return false, out end
  if code ~= 0 then return false, "exit code " .. tostring(code) end
  return true
end

local PROBES = { http = probe_http, tcp = probe_tcp, exec = probe_exec }

local FIRST_PROBE = 0.005   -- while starting, probes go at least this far apart
local EARLY = 0.002         -- a timer may fire this much before its time (libuv counts in ms)
local LATE = 0.005          -- a timer this late means mw did not get the CPU in time
local HB_RESTARTS = 3       -- restarts for heartbeat failures in flight at once, per stack
local HB_SLOTS = 8          -- phases of the tick grid that instances are dealt over
local START_INFLIGHT = 4    -- probes out at once while starting (one once healthy)

-- The first tick of the grid (interval i, phase slot x i) after now.
local function grid_after(now, i, slot)
  local off = slot * i
  return (math.floor((now + EARLY - off) / i) + 1) * i + off
end

-- One task per instance sends a probe every interval, with at most one in flight: a probe
-- still out at the next tick is a miss, and no second one is piled on it (a slow component
-- gets no more load than one question at a time). Ticks fall on a grid shared by every
-- instance with the same interval (multiples of it on mw's clock, at one of HB_SLOTS phases
-- dealt round-robin), so N instances are probed in HB_SLOTS wake-ups of the loop, not N:
-- staggered at random, 100 instances at 1 s cost 1.9 % of a core against 1.4 % on one grid
-- (6x the epoll_waits); the phases keep a burst to N / HB_SLOTS connections (1000 at once
-- made one server of 1000 endpoints answer late; tests/bench/RESULTS.md).
--
-- The failure rule is one of time: a healthy instance that has answered well none of the
-- probes sent in the last misses x interval has failed, whatever the phase of the interval
-- when it hung: a hang is found within misses x interval, and no sooner than
-- (misses - 1) x interval. (A slow answer counts from the tick before it came, or a good
-- answer that took longer than the window would fail at once; with misses = 1 the probe
-- after the last good one gets min(timeout, interval).)
--
-- While starting, HTTP and TCP probes go fast (5 ms apart, then an eighth of the time since
-- the start) so "healthy" follows readiness by milliseconds, not by up to an interval; a
-- starting instance fails when it has not answered well within grace (and at least misses x
-- interval).
function Sup:start_heartbeat(c)
  self:stop_heartbeat(c)
  local hb = c.def.heartbeat
  if not hb then return end
  local gen = {}
  local st = c.hb
  st.gen, st.misses = gen, 0
  self.hb_dealt = ((self.hb_dealt or 0) + 1) % HB_SLOTS
  st.slot = self.hb_dealt / HB_SLOTS       -- the phase, as a fraction of the interval
  st.task = self:spawn(c.key .. "-heartbeat", function()
    local started = core.now()
    -- an exec probe is a process in the container and ~0.1 s of the engine's: never fast
    local fast = hb.kind ~= "exec"
    local probe_out
    local next_tick = started
    while st.gen == gen and c.hb == st do
      hb = c.def.heartbeat         -- a reload may have changed the settings
      if not hb then return end
      local now = core.now()
      if now >= next_tick - EARLY then
        -- while starting, a few probes may overlap: through docker-proxy a probe sent before
        -- the service listens can take 60 ms to fail, and waiting for it would put off the one
        -- that finds it ready
        local overlap = false
        -- a check that overran its budget keeps to the interval: each overrun holds the loop
        if c.hb.check_failed then fast = false end
        if c.state == "starting" and fast then
          local out = 0
          for _ in pairs(c.probes) do out = out + 1 end
          overlap = out < START_INFLIGHT
        end
        if probe_out and not probe_out.done and not overlap then
          self:miss(c, "no answer within " .. log.dur(hb.interval), started)
        else
          local p = { sent = now }
          probe_out = p
          p.task = core.spawn(function()
            local ok, why = PROBES[hb.kind](self, c, hb)
            p.done = true
            c.probes[p] = nil
            if st.gen ~= gen then return end
            if ok then self:good(c, core.now() - p.sent, p.sent) else self:miss(c, why, started, core.now() - p.sent) end
          end, c.key .. "-probe")
          c.probes[p] = true
        end
        if st.gen ~= gen then return end
        if c.state == "starting" and fast then
          -- every 5 ms at first, then an eighth of the time since the start: healthy comes at
          -- most 12.5 % (or 5 ms) after the service answers, for ~8 probes per doubling of it
          next_tick = now + math.min(hb.interval, math.max(FIRST_PROBE, (now - started) / 8))
        else
          next_tick = grid_after(now, hb.interval, st.slot)
        end
      end
      -- wake at the failure deadline if it comes before the next tick (one already past, for
      -- an instance held, leaves the tick as it is)
      local wake = next_tick
      local due = self:hb_deadline(c, started)
      if due and due > now and due < wake then wake = due end
      core.sleep(math.max(0, wake - core.now()))
      -- woken late, mw itself was starved of CPU (an engine starting many containers can take
      -- both cores): an answer may sit unread, and libuv runs timers before it polls. Let the
      -- loop read what came before judging.
      if core.now() - wake > LATE then core.sleep(0.002) end
      if st.gen == gen then self:hb_check(c, started) end
    end
  end)
end

function Sup:stop_heartbeat(c)
  if c.hb then c.hb.gen = nil end
  if c.pidw and c.handling then c.pidw:close() c.pidw = nil end
  if c.hb and c.hb.task and c.hb.task ~= core.current() then core.cancel(c.hb.task) end
  for p in pairs(c.probes) do
    if not p.done then core.cancel(p.task) end
  end
  c.probes = {}
end

-- A good answer to the probe sent at `sent` (mw's clock).
function Sup:good(c, latency, sent)
  if self.on_beat then self.on_beat(c.key, true, latency) end     -- metrics
  c.hb.misses = 0
  c.hb.held = nil
  c.hb_restart = nil
  c.hb.latency = latency
  c.hb.last_ok = core.time()
  -- the reference for the failure deadline: the probe's send time, or for an answer that took
  -- longer than an interval the last tick before it came (a slow answer is still an answer)
  local hb = c.def.heartbeat
  local ref = sent or core.now()
  if hb then ref = math.max(ref, grid_after(core.now(), hb.interval, c.hb.slot or 0) - hb.interval) end
  c.hb.last_ok_at = math.max(c.hb.last_ok_at or 0, ref)
  if c.state == "starting" or c.state == "unhealthy" then
    local was = c.state
    set_state(self, c, "healthy")
    if was == "starting" then
      log.info(c.key, "healthy", string.format("healthy (heartbeat %s)", log.dur(latency)), { latency = latency })
    end
  end
end

-- A probe that failed (latency given) or is still out at a tick (none).
function Sup:miss(c, why, started, latency)
  if self.on_beat then self.on_beat(c.key, false, latency) end
  if latency then c.failed_probes = (c.failed_probes or 0) + 1 end
  c.hb.misses = c.hb.misses + 1
  c.missed = (c.missed or 0) + 1
  c.hb.last_error = why
  if c.state == "healthy" then set_state(self, c, "unhealthy") end
  self:hb_check(c, started)
end

-- When the instance fails if no good answer comes first (nil when it does not run).
function Sup:hb_deadline(c, started)
  local hb = c.def.heartbeat
  if not hb then return nil end
  local window = hb.misses * hb.interval
  if c.state == "starting" then return started + math.max(hb.grace, window) end
  if c.state == "healthy" or c.state == "unhealthy" then
    -- at least one probe after the last good one must have had its chance (misses = 1)
    local ref = c.hb.last_ok_at or started
    return math.max(ref + window, ref + hb.interval + math.min(hb.timeout, hb.interval))
  end
  return nil
end

-- Whether the stack is coming up: an instance is in its first create and start, or the last
-- of those ended less than `window` seconds ago. Read from the instances rather than counted,
-- so a bring-up cancelled mid-start (its instance failed, or was retired) stops counting at
-- once: its state leaves "waiting".
function Sup:coming_up(window)
  if self.first_start_end and core.now() - self.first_start_end < window then return true end
  for _, o in pairs(self.comps) do
    if o.first_start and o.state == "waiting" then return true end
  end
  return false
end

-- Instances restarted for a heartbeat failure that are not yet healthy again (backoff waits
-- do not count: they load nothing).
function Sup:hb_restarts(except)
  local n = 0
  for _, o in pairs(self.comps) do
    if o ~= except and o.hb_restart and (o.state == "restarting" or o.state == "starting") then n = n + 1 end
  end
  return n
end

-- Fails the instance when its deadline has passed, unless HB_RESTARTS others are already being
-- restarted for heartbeat failures, or the stack is coming up (a first create and start under
-- way, or ended less than misses x interval ago): many instances going silent together is
-- more likely the host or the engine overloaded (a cold start of 30 took both cores here)
-- than each of them hung, and restarting them adds load. Held, it keeps being probed; an
-- answer clears it, and once the hold ends the failure goes through at the next tick.
function Sup:hb_check(c, started)
  local due = self:hb_deadline(c, started)
  if not due or core.now() < due - EARLY or c.handling then return end
  local hb = c.def.heartbeat
  local why = tostring(c.hb.last_error or "no answer")
  local busy = self:hb_restarts(c)
  local held
  if busy >= HB_RESTARTS then
    held = string.format("while %d others restart after heartbeat failures", busy)
  elseif c.state ~= "starting" and self:coming_up(hb.misses * hb.interval) then
    -- the stack is coming up: the engine creating and starting containers can take every
    -- core (30 at once here), and a silence that overlaps it is more likely that than a hang
    held = "while the stack comes up"
  end
  if held then
    if not c.hb.held then
      c.hb.held = true
      log.warn(c.key, "held", string.format("no good heartbeat (%s); restart held %s", why, held), { reason = "heartbeat" })
    end
    return
  end
  c.hb.held = nil
  if c.state == "starting" then
    self:failure(c, "heartbeat", { message = "not healthy within " .. log.dur(math.max(hb.grace, hb.misses * hb.interval))
      .. ": " .. why })
  else
    self:failure(c, "heartbeat", { message = string.format("no good heartbeat for %s (%d missed): %s",
      log.dur(hb.misses * hb.interval), c.hb.misses, why) })
  end
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
  elseif type(action) ~= "string" or not ACTIONS[action] then
    why = "returned an unknown action " .. shown(action)
  elseif type(delay) == "string" then
    local d, derr
    if #delay <= 64 then d, derr = duration.parse(delay) end     -- "500ms" is as good as 0.5
    if d then delay = d else why = "returned a bad delay: " .. (derr or shown(delay)) end
  elseif delay ~= nil and (type(delay) ~= "number" or delay ~= delay or delay < 0) then
    why = "returned a bad delay " .. shown(delay)
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
    set_state(self, c, "gave_up")
    log.error(c.key, "gave_up", (why and (why .. "; ") or "") .. "giving up (restart policy)", { reason = record.reason })
    return
  end
  if action == "ignore" then
    c.pending = nil
    c.handling = false
    set_state(self, c, "stopped")
    log.info(c.key, "stopped", (why or "stopped") .. "; not restarting (restart policy)")
    return
  end
  c.pending = { action = action, delay = delay, since = core.now(), record = record }
  c.retry_at = core.time() + delay
  set_state(self, c, "backoff")
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
  set_state(self, c, "restarting")
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
    set_state(self, c, "restarting")
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
  set_state(self, c, "restarting")
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
      set_state(self, c, c.def.heartbeat and "starting" or "running")
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
    set_state(self, c, "waiting")
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
          if def.heartbeat and c.state == "running" then set_state(self, c, "starting") end
          if not def.heartbeat and c.state ~= "running" then set_state(self, c, "running") end
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

-- ---------------------------------------------------------------------------------------------
-- autoscaling

local SCALE_BUDGET = { instructions = 1e6, seconds = 0.1 }

-- One sample per instance: CPU (cores, from two successive one-shot stats), memory, heartbeat
-- latency and the JSON the instance serves.
function Sup:sample(g)
  local out = {}
  local tasks = {}
  for _, c in ipairs(instances(g)) do
    local row = { index = c.index, state = c.state, latency = c.hb and c.hb.latency }
    out[#out + 1] = row
    if c.hb and c.hb.body then
      local ok, v = pcall(cjson.decode, c.hb.body)
      if ok then row.json = v end
    end
    if c.id and is_up(c) then
      tasks[#tasks + 1] = core.spawn(function()
        local st = self.engine:stats(c.id)
        if not st then return end
        local usage = st.cpu_stats and st.cpu_stats.cpu_usage and st.cpu_stats.cpu_usage.total_usage
        local now = core.now()
        if usage and c.cpu_prev and now > c.cpu_prev.t then
          row.cpu = math.max(0, (usage - c.cpu_prev.usage) / 1e9 / (now - c.cpu_prev.t))
        end
        if usage then c.cpu_prev = { usage = usage, t = now } end
        row.memory = st.memory_stats and st.memory_stats.usage
      end, c.key .. "-stats")
    end
  end
  for _, t in ipairs(tasks) do core.join(t) end
  return out
end

function Sup:autoscale_once(g)
  local a = g.def.autoscale
  local s = { component = g.name, desired = g.desired, min = a.min, max = a.max, now = core.time(),
              last_change = g.last_change, instances = self:sample(g) }
  local ok, n = core.budget(a.decide, SCALE_BUDGET, s)
  if not ok or type(n) ~= "number" or n ~= n then
    log.warn(g.name, "autoscale_error", "autoscale decide failed (" .. (ok and ("returned " .. shown(n)) or failure_text(n))
      .. "); the scale stays " .. g.desired)
    return
  end
  n = math.max(a.min, math.min(a.max, math.floor(n)))
  if n ~= g.desired and self.groups[g.name] == g then
    log.info(g.name, "autoscale", string.format("autoscale: %d -> %d instances", g.desired, n),
      { from = g.desired, to = n })
    g.autoscaled = true
    g.last_change = core.time()
    self:scale(g, n)
  end
end

-- One task for every autoscaled component: each is sampled on its own period.
function Sup:autoscaler()
  self.autoscale_wake = core.cond()
  return self:spawn("autoscale", function()
    local due = {}
    while not self.stopping do
      local now = core.now()
      local next_due
      for name, g in pairs(self.groups) do
        local a = g.def.autoscale
        if a then
          due[name] = math.min(due[name] or math.huge, now + a.every)   -- a reload may shorten it
          if now >= due[name] then
            due[name] = now + a.every
            self:autoscale_once(g)
          end
          next_due = math.min(next_due or math.huge, due[name])
        else
          due[name] = nil
        end
      end
      -- asleep until the next group is due, or for good while none autoscales (a reload wakes it)
      self.autoscale_wake:wait(next_due and math.max(0.001, next_due - core.now()) or -1)
    end
  end)
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
    set_state(self, c, "gone")
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

-- Probes a candidate container until it answers its heartbeat, or the deadline passes.
function Sup:wait_healthy(c, id, port, deadline)
  local hb = c.def.heartbeat
  local cand = { name = c.name, id = id, hb = { host_port = port }, def = c.def }
  local why
  while core.now() < deadline do
    local ok, w = PROBES[hb.kind](self, cand, hb)
    if ok then return true end
    why = w
    core.sleep(math.min(hb.interval, 0.2))
  end
  return nil, why or "no answer"
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
  set_state(self, c, "restarting")
  local ok, err = self:create_and_start(c, body)
  c.hash = hash
  if not ok then self:start_failed(c, err) return nil, err end
  local pok, perr, pinfo = self:post_start(c, "replaced")
  if not pok then self:start_failed(c, perr, pinfo) return nil, perr end
  self:settle(c)
  log.info(c.key, "replace", string.format("replaced stop-first in %s", log.dur(core.now() - t0)))
  return true
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
