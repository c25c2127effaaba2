-- Coordination on etcd: one active mw per stack across hosts (`mw run --coord etcd://...`).
--
-- A contender holds a lease (TTL seconds, renewed every TTL/4) and campaigns with it for the
-- stack's election <prefix>/<stack>/election; its campaign value is {pid, host, since}. etcd
-- makes the oldest key under the election name the leader; the key lives only as long as
-- its lease. The interface is the local queue's (wait, lost, leave) plus a fence:
--
--   fence() is true only while this mw leads AND its own monotonic clock says the lease is
--   still alive: a renewal sent at time s keeps the lease until at least s + TTL on etcd's
--   side (etcd counts the TTL from when it receives the renewal), so the fence closes at
--   s + TTL - margin, before anyone else can win the election. Every engine write asks the
--   fence first (docker.lua), so a frozen (SIGSTOP) or cut-off leader refuses its writes as
--   soon as it runs again, whatever task runs first.
--
-- --force: the newcomer revokes the leases of every key ahead of its own, nearest first (so
-- no one between becomes leader for a moment), then waits the revoked leader's whole TTL
-- before it acts: the old leader's fence has closed by then even if it never heard of it.
local core = require "mw.core"
local cjson = require "cjson"
local log = require "mw.log"
local etcd = require "mw.etcd"

local coord = {}

coord.DEFAULT_TTL = 5
-- below this etcd raises the TTL anyway (its minimum is about 1.5 election timeouts)
coord.MIN_TTL = 2

-- The coordination settings from options and the environment -> cfg | nil, message.
-- o: coord (the address), ttl, ca, cert, key, user ("name:password"), password.
-- The ETCDCTL_* names are those etcdctl reads (etcdctl --help, etcd 3.4).
function coord.config(o)
  local env = os.getenv
  local url = o.coord or env("MW_COORD")
  if url == nil or url == "" then return false end
  local tls = {
    ca = o.coord_ca or env("MW_COORD_CACERT") or env("ETCDCTL_CACERT"),
    cert = o.coord_cert or env("MW_COORD_CERT") or env("ETCDCTL_CERT"),
    key = o.coord_key or env("MW_COORD_KEY") or env("ETCDCTL_KEY"),
  }
  if (tls.cert == nil) ~= (tls.key == nil) then return nil, "--coord-cert and --coord-key go together" end
  local addr, err = etcd.parse(url, tls)
  if not addr then return nil, err end
  local user = o.coord_user or env("MW_COORD_USER") or env("ETCDCTL_USER")
  local password = env("MW_COORD_PASSWORD") or env("ETCDCTL_PASSWORD")
  if user and not password and user:find(":") then user, password = user:match("^([^:]*):(.*)$") end
  if user and not password then return nil, "etcd user " .. user .. " needs a password (MW_COORD_PASSWORD, or user:password)" end
  local ttl = o.coord_ttl or env("MW_COORD_TTL")
  if ttl ~= nil then
    local n = math.tointeger(tonumber((tostring(ttl):gsub("s$", ""))))
    if not n or n < coord.MIN_TTL or n > 3600 then
      return nil, "--coord-ttl must be a whole number of seconds from " .. coord.MIN_TTL .. " to 3600 (got " .. tostring(ttl) .. ")"
    end
    ttl = n
  end
  return {
    url = url, endpoints = addr.endpoints, prefix = addr.prefix, ttl = ttl or coord.DEFAULT_TTL,
    tls = addr.https and tls or nil, user = user, password = password,
  }
end

function coord.client(cfg)
  return etcd.client { endpoints = cfg.endpoints, tls = cfg.tls, user = cfg.user, password = cfg.password,
                       timeout = math.max(1, cfg.ttl / 4) }
end

function coord.election(cfg, stack) return cfg.prefix .. "/" .. stack .. "/election" end

-- The leader's identity (its campaign value) -> { pid, host, since, key } | false | nil, err
function coord.leader(cfg, stack, client)
  client = client or coord.client(cfg)
  local l, err = client:leader(coord.election(cfg, stack))
  if not l then return l, err end
  local ok, v = pcall(cjson.decode, l.value or "")
  if not ok or type(v) ~= "table" then v = {} end
  return { pid = math.tointeger(v.pid), host = v.host, since = v.since, key = l.key, lease = l.lease }
end

local C = {}
C.__index = C

-- coord.enter{ cfg, stack, force } -> contender. Nothing is asked of etcd yet: an etcd that
-- does not answer makes mw wait (and say so), never fail.
function coord.enter(o)
  local cfg = o.cfg
  local c = setmetatable({
    cfg = cfg, client = coord.client(cfg), stack = o.stack, force = o.force,
    name = coord.election(cfg, o.stack),
    info = { pid = core.pid(), host = core.hostname(), since = core.time() },
    ttl = cfg.ttl, deadline = 0, active = false, left = false,
    changed = core.cond(), stale = {},
  }, C)
  c.margin = math.max(0.5, c.ttl / 4)
  c.fence = function() return c.active and not c.left and core.now() < c.deadline end
  c.renewer = core.spawn(function() c:_renew_loop() end, "coord lease")
  return c
end

function C:_unreachable(err)
  if not self.unreachable then
    self.unreachable = true
    log.warn(nil, "coord_unreachable", "cannot reach or use etcd (" .. self.cfg.url .. "): " .. tostring(err)
      .. "; containers keep running, waiting for it", { error = tostring(err) })
  end
end

function C:_reachable()
  if self.unreachable then
    self.unreachable = false
    log.info(nil, "coord_reachable", "etcd (" .. self.cfg.url .. ") answers again")
  end
end

-- The lease is gone or can no longer be proven: forget it (revoked later when etcd answers,
-- so that its key does not hold the election until it expires).
function C:_drop_lease(why)
  if self.lease then self.stale[#self.stale + 1] = self.lease end
  self.lease = nil
  self.deadline = 0
  self.lost_why = why
  self.changed:notify()
end

function C:_renew_loop()
  local backoff = 0.1
  while not self.left do
    if not self.lease then
      -- leases of earlier terms first: their keys would hold the election until they expire
      for i = #self.stale, 1, -1 do
        if self.client:revoke(self.stale[i], self.margin) then table.remove(self.stale, i) end
      end
      local sent = core.now()
      local id, ttl, kind = self.client:grant(self.ttl)
      if self.left then
        if id then self.client:revoke(id, self.margin) end
        return
      end
      if id then
        self:_reachable()
        self.lease, self.granted = id, ttl or self.ttl
        self.deadline = sent + self.granted - self.margin
        backoff = 0.1
        self.changed:notify()
      else
        -- an error answer (say, a refused login) is reported the same way, once
        self:_unreachable(kind == "unreachable" and ttl or ("etcd refuses: " .. tostring(ttl)))
        core.sleep(backoff)
        backoff = math.min(backoff * 2, self.ttl / 4)
      end
    else
      core.sleep(self.ttl / 4)
      if self.left or not self.lease then goto continue end
      local lease = self.lease
      local sent = core.now()
      local left, err, kind = self.client:keepalive(lease, math.max(0.2, self.deadline - sent))
      if self.lease ~= lease then goto continue end
      if left and left > 0 then
        self:_reachable()
        self.deadline = sent + self.granted - self.margin
        if self.active then
          -- our key may have been deleted by hand while the lease lives: still the leader?
          local l = self.client:leader(self.name)
          if l == false or (l and l.key ~= self.key) then
            self:_drop_lease("another contender leads the election")
          end
        end
      elseif left == 0 then
        self:_reachable()
        self:_drop_lease("the lease expired or was revoked")
      else
        if kind == "unreachable" then self:_unreachable(err) end
        if core.now() >= self.deadline then self:_drop_lease("the lease could not be renewed in time: " .. tostring(err)) end
      end
    end
    ::continue::
  end
end

-- Yields until there is a lease (or we left) -> lease | nil
function C:_await_lease()
  while not self.left and not self.lease do self.changed:wait(1) end
  return self.lease
end

-- Revokes every lease ahead of ours (--force), nearest first -> seconds to wait before acting.
function C:_force_out(mykey)
  local keys = self.client:range_prefix(self.name .. "/")
  if not keys then return 0 end
  local myrev
  for _, kv in ipairs(keys) do if kv.key == mykey then myrev = kv.rev end end
  if not myrev then return 0 end
  local wait = 0
  for i = #keys, 1, -1 do
    local kv = keys[i]
    if kv.rev < myrev and kv.lease then
      local info = self.client:timetolive(kv.lease)
      if self.client:revoke(kv.lease) then
        -- measured from the answer: any renewal the old leader sent went before the revocation
        local t1 = core.now()
        local ok, v = pcall(cjson.decode, kv.value or "")
        log.info(nil, "forced", string.format("--force: revoked the lease of pid %s on %s",
          tostring(ok and type(v) == "table" and v.pid or "?"), tostring(ok and type(v) == "table" and v.host or "?")))
        -- its holder's fence closes at most its granted TTL after our revocation
        local granted = info and info.granted > 0 and info.granted or self.ttl
        wait = math.max(wait, t1 + granted - core.now())
      end
    end
  end
  return wait
end

-- c:wait(on_wait) -> true once this mw leads | nil, "left". on_wait(info) is called with the
-- identity of the leader whenever it changes while we wait.
function C:wait(on_wait)
  local seen
  while not self.left do
    local lease = self:_await_lease()
    if not lease then break end
    local mykey = self.name .. "/" .. etcd.lease_hex(lease)
    local st = { }
    local wake = core.cond()
    local campaigner = core.spawn(function()
      st.key, st.err, st.kind = self.client:campaign(self.name, lease, cjson.encode(self.info))
      st.done = true
      wake:notify()
    end, "coord campaign")
    local watcher = core.spawn(function()
      -- who leads, for the waiting line (and whether etcd answers at all)
      while not st.done do
        local l, err = coord.leader(self.cfg, self.stack, self.client)
        if l and l.key ~= mykey and l.key ~= seen then
          seen = l.key
          if on_wait then on_wait(l) end
        elseif l == nil and err then
          self:_unreachable(err)
        end
        core.sleep(self.ttl / 4)
      end
    end, "coord watch")
    local force_wait = 0
    if self.force then
      -- our key exists once the campaign has put it; then push everyone ahead out
      local deadline = core.now() + self.ttl
      while not st.done and core.now() < deadline do
        local keys = self.client:range_prefix(mykey)
        if keys and #keys > 0 then break end
        core.sleep(0.05)
      end
      force_wait = self:_force_out(mykey)
      self.force = false
    end
    while not st.done and self.lease == lease and not self.left do wake:wait(0.25) end
    core.cancel(watcher)
    if not st.done then core.cancel(campaigner) end
    if st.done and st.key and self.lease == lease and not self.left then
      if force_wait > 0 then
        log.info(nil, "forced", string.format("waiting %.1f s for the previous leader's lease to run out", force_wait))
        core.sleep(force_wait)
      end
      -- a campaign also returns when our key was deleted while it waited: ask who leads
      local l = self.client:leader(self.name)
      if l and l.key == mykey and self.lease == lease and core.now() < self.deadline then
        self.key = mykey
        self.active = true
        self.lost_why = nil
        return true
      end
    elseif st.done and st.err then
      if st.kind == "unreachable" then self:_unreachable(st.err) end
      core.sleep(0.2)
    end
  end
  return nil, "left"
end

-- c:lost() -> why, yields until this leader's lease is gone or can no longer be proven (the
-- fence is closed by then).
function C:lost()
  while true do
    if self.left then return nil, "left" end
    if not self.fence() then
      self.active = false
      local why = self.lost_why or "the lease could not be renewed in time"
      -- the deadline may pass while the renewer is still waiting for an answer
      if self.lease and core.now() >= self.deadline then self:_drop_lease(why) end
      return why
    end
    self.changed:wait(math.max(0.01, self.deadline - core.now()))
  end
end

function C:leave()
  if self.left then return true end
  self.left = true
  self.active = false
  self.changed:notify()
  if self.renewer and self.renewer ~= core.current() then core.cancel(self.renewer) end
  -- revoking hands over at once instead of after the TTL
  if self.lease and core.in_task() then self.client:revoke(self.lease, self.margin) end
  self.lease = nil
  return true
end

C.__close = C.leave

return coord
