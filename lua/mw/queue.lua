-- The coordination queue: one active mw per stack, the others waiting in line behind it.
--
-- Backend: a directory of wait files (the ZooKeeper lock recipe on a local file system).
-- Each contender publishes one file, named by a sequence number, and holds an advisory
-- lock on it while its process lives; the first file in order holds the role. A waiter
-- watches only its predecessor, so a departure wakes one process, not the whole line.
-- The interface (enter, wait, replaced, leave, list) is what an etcd lease/election
-- backend would implement as well; nothing outside this file sees files or locks.
--
-- Directory <dir>/<stack>/queue/ holds:
--   00000000000000000042-12345   a wait file: sequence, pid; one JSON line {pid,host,since}
--   .<wait file>.sock            its beacon, a unix socket the owner listens on (see below)
--   .<wait file>.new             a wait file being created (only under the counter lock)
--   .lock, .seq                  the counter lock and the last sequence number handed out
--
-- Why a beacon: a SIGKILLed owner leaves its file behind, and the kernel releasing its
-- flock makes no inotify event. The waiter keeps a connection to the predecessor's
-- socket; the kernel closes it when the owner dies, so the waiter learns of the death
-- at once instead of polling the lock. The lock stays the only test of life.
local core = require "mw.core"
local fs = require "mw.fs"
local net = require "mw.net"
local cjson = require "cjson"

local queue = {}

local SEQ_WIDTH = 20
local PRIVATE = tonumber("700", 8)
-- sockaddr_un.sun_path holds 107 bytes and a NUL; libuv 1.44 truncates longer paths silently
local SUN_PATH_MAX = 107
-- Only when a predecessor has no reachable beacon: how often its lock is tested again.
-- A dying owner's sockets close a few milliseconds before the kernel drops its flock, so
-- the tests start at FIRST_RECHECK and back off to RECHECK (which also serves a beacon
-- path too long for a socket).
local FIRST_RECHECK, RECHECK = 0.005, 0.25
-- The counter lock is held for a few file operations; past this something is stuck.
local COUNTER_PATIENCE = 5

local function join(...) return table.concat({ ... }, "/") end

-- The effective uid from /proc: the core has no getuid, and $USER or $EUID can lie or be unset.
local function euid()
  local s = fs.read("/proc/self/status")
  return s and math.tointeger(tonumber(s:match("\nUid:%s+%d+%s+(%d+)")))
end

function queue.default_dir()
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if xdg and xdg ~= "" then return xdg .. "/mw" end
  local uid = euid()
  if uid == 0 then return "/run/mw" end
  if uid then return "/tmp/mw-" .. uid end
  -- no /proc: only root can create /run/mw
  if fs.mkdirp("/run/mw", PRIVATE) then return "/run/mw" end
  return "/tmp/mw-" .. (os.getenv("USER") or "unknown")
end

-- ---- wait files ----

local function parse_name(name)
  local seq, pid = name:match("^(%d+)%-(%d+)$")
  if not seq or #seq ~= SEQ_WIDTH then return nil end
  return seq, math.tointeger(tonumber(pid))
end

local function beacon_path(qdir, name) return join(qdir, "." .. name .. ".sock") end

-- The wait files in line order (fixed-width sequences compare as strings), plus all names.
local function entries(qdir)
  local names, err, code = fs.list(qdir)
  if not names then return nil, err, code end
  local out = {}
  for _, n in ipairs(names) do
    local seq, pid = parse_name(n)
    if seq then out[#out + 1] = { name = n, seq = seq, pid = pid } end
  end
  table.sort(out, function(a, b)
    if a.seq ~= b.seq then return a.seq < b.seq end
    return a.pid < b.pid
  end)
  return out, names
end

-- "alive" when the owner holds the lock, "dead" when we could take it. The test lock is
-- dropped at once, so a live contender probing the same file never mistakes us for its
-- owner for longer than a moment. fs.lock creates a missing file: a caller that sees
-- "dead" must remove the file, which also removes such an accidental empty one.
local function probe(path)
  local lk, err = fs.lock(path)
  if lk then
    lk:close()
    return "dead"
  end
  if err == "locked" then return "alive" end
  return "unknown", err
end

local function remove_dead(qdir, name)
  -- another contender may have removed it already; that is the same outcome
  fs.remove(join(qdir, name))
  fs.remove(beacon_path(qdir, name))
end

local function read_info(path, e)
  local s = fs.read(path)
  local ok, v = pcall(cjson.decode, s or "")
  if not ok or type(v) ~= "table" then v = {} end
  return {
    name = e.name,
    pid = math.tointeger(v.pid) or e.pid,
    host = type(v.host) == "string" and v.host or nil,
    since = type(v.since) == "number" and v.since or nil,
  }, s
end

-- ---- the sequence counter ----

local function take_counter(qdir)
  local path = join(qdir, ".lock")
  local deadline = core.now() + COUNTER_PATIENCE
  while true do
    local lk, err = fs.lock(path)
    if lk then return lk end
    if err ~= "locked" then return nil, err end
    if core.now() > deadline then return nil, "queue " .. qdir .. ": the sequence counter stays locked" end
    -- a released flock makes no event to wait for, and the holder is done in milliseconds
    core.sleep(0.002 + math.random() * 0.008)
  end
end

-- Under the counter lock nobody is half-way through enter, so half-made files are debris
-- of a process that died there, and a beacon without its wait file belongs to nobody.
local function sweep(qdir, names)
  local present = {}
  for _, n in ipairs(names) do present[n] = true end
  for _, n in ipairs(names) do
    if n:match("^%..+%.new$") or n:match("^%.seq%.tmp%.%d+$") then
      fs.remove(join(qdir, n))
    else
      local owner = n:match("^%.(.+)%.sock$")
      if owner and not present[owner] then fs.remove(join(qdir, n)) end
    end
  end
end

-- ---- a contender ----

local Queue = {}
Queue.__index = Queue

local function accept_loop(q, server)
  while true do
    -- leave may close the server before this task first runs
    if q.left then return end
    local c = server:accept()
    if not c then return end
    q.conns[c] = true
    -- the successor never writes; reading only notices when it goes away
    core.spawn(function()
      while not q.left and c:read() do end
      q.conns[c] = nil
      c:close()
    end, "queue beacon peer")
  end
end

-- Takes the next sequence number and publishes the wait file, all under the counter lock:
-- a file with a lower number is then always visible before one with a higher number, so
-- a newcomer can never see an empty line while an older contender is still unpublished.
local function publish(q)
  local counter <close>, err = take_counter(q.qdir)
  if not counter then return nil, err end
  local list, names = entries(q.qdir)
  if not list then return nil, names end
  sweep(q.qdir, names)
  -- the counter file may be lost (tmpfs, a careless rm); never hand out a number in use
  local last = math.tointeger(tonumber(fs.read(join(q.qdir, ".seq")) or "")) or 0
  for _, e in ipairs(list) do
    local n = math.tointeger(tonumber(e.seq))
    if n and n > last then last = n end
  end
  local seq = last + 1
  q.name = string.format("%0" .. SEQ_WIDTH .. "d-%d", seq, q.pid)
  q.path = join(q.qdir, q.name)
  q.sock = beacon_path(q.qdir, q.name)
  -- created, written and locked under a hidden name, then renamed into place: a visible
  -- wait file is always complete and locked by its live owner
  local tmp = join(q.qdir, "." .. q.name .. ".new")
  local content = cjson.encode { pid = q.pid, host = q.host, since = q.since } .. "\n"
  local lk, lerr = fs.lock(tmp, content)
  if not lk then return nil, lerr end
  if #q.sock <= SUN_PATH_MAX then
    -- without a beacon the queue still works; successors fall back to testing the lock
    q.server = net.listen("unix:" .. q.sock)
  end
  local ok, rerr = os.rename(tmp, q.path)
  if not ok then
    lk:close()
    fs.remove(tmp)
    if q.server then q.server:close(); q.server = nil; fs.remove(q.sock) end
    return nil, rerr
  end
  q.lock = lk
  -- no fsync (it held the loop on mw run's start path): a counter lost or torn by a crash is
  -- read as 0, and the wait files' own numbers above keep the next one unused
  local wok, werr = fs.write_atomic(join(q.qdir, ".seq"), tostring(seq) .. "\n", nil, false)
  if not wok then
    q:leave()
    return nil, werr
  end
  return true
end

-- queue.enter{ dir =, stack =, force = } -> q | nil, err
function queue.enter(opts)
  if type(opts) ~= "table" then error("queue.enter: expected a table of options", 2) end
  local dir = opts.dir or queue.default_dir()
  if type(dir) ~= "string" or dir == "" then error("queue.enter: dir must be a non-empty string", 2) end
  local stack = opts.stack
  if type(stack) ~= "string" or not stack:match("^[%w][%w_.-]*$") then
    error("queue.enter: stack must be a name of letters, digits, '_', '.', '-'", 2)
  end
  if not core.in_task() then error("queue.enter: called outside a task", 2) end

  local sdir = join(dir, stack)
  local qdir = join(sdir, "queue")
  -- a state dir the user already had keeps its mode (it may be /tmp); ours are private
  local dir_ours = not fs.stat(dir) or dir == queue.default_dir()
  local ok, err = fs.mkdirp(qdir, PRIVATE)
  if not ok then return nil, err end
  -- chmod also proves ownership: it fails on a directory someone else planted
  for _, d in ipairs(dir_ours and { dir, sdir, qdir } or { sdir, qdir }) do
    local cok, cerr = fs.chmod(d, PRIVATE)
    if not cok then return nil, cerr end
  end

  local q = setmetatable({
    dir = dir, stack = stack, qdir = qdir,
    pid = core.pid(), host = core.hostname(), since = core.time(),
    conns = {}, left = false, waiting = false,
  }, Queue)
  local pok, perr = publish(q)
  if not pok then return nil, perr end
  if q.server then core.spawn(accept_loop, "queue beacon", q, q.server) end

  if opts.force then
    -- The owners see their own files go (q:replaced) and step down. Nearest first: were
    -- the head removed first, the next in line could take the role for a moment.
    local list = entries(qdir) or {}
    local mine = #list + 1
    for i, e in ipairs(list) do
      if e.name == q.name then mine = i end
    end
    for i = mine - 1, 1, -1 do fs.remove(join(qdir, list[i].name)) end
  end
  return q
end

-- The live wait files ahead of ours, after removing the dead ones; nil, "replaced" when
-- ours is gone.
function Queue:_ahead()
  local list, err = entries(self.qdir)
  if not list then return nil, err end
  local ahead, mine = {}, false
  for _, e in ipairs(list) do
    if e.name == self.name then
      mine = true
      break
    end
    if probe(join(self.qdir, e.name)) == "dead" then
      remove_dead(self.qdir, e.name)
    else
      -- "unknown" (say, another user's file we may not open) counts as alive: never
      -- take the role on a guess
      ahead[#ahead + 1] = e
    end
  end
  -- readdir returns every file not renamed or removed meanwhile, and ours never is
  -- renamed; the stat only guards against a surprise
  if not mine and not fs.stat(self.path) then return nil, "replaced" end
  return ahead
end

-- Connects to the predecessor's beacon; when the connection ends, its owner may be dead.
local function listen_to(st, qdir, name, wake)
  local sock = beacon_path(qdir, name)
  if #sock > SUN_PATH_MAX then return end
  local c = net.connect("unix:" .. sock, nil, 1)
  if not c then return end
  if st.done or st.pred ~= name then
    c:close()
    return
  end
  st.conn = c
  core.spawn(function()
    while not st.done and st.conn == c and c:read() do end
    c:close()
    if st.conn == c and not st.done then
      st.conn = nil
      wake:notify()
    end
  end, "queue beacon watch")
end

-- q:wait([on_wait]) -> true | nil, "replaced" | nil, "left" | nil, err
function Queue:wait(on_wait)
  if not core.in_task() then error("q:wait: called outside a task", 2) end
  if self.waiting then error("q:wait: another task is already waiting", 2) end
  if self.left then return nil, "left" end
  -- the watch comes first: whatever goes after the first look at the line makes an event
  local w, err = fs.watch(self.qdir)
  if not w then return nil, err end
  local wake = core.cond()
  local st = { done = false }
  local _ <close> = setmetatable({}, { __close = function()
    st.done = true
    w:close()
    if st.conn then st.conn:close() end
    wake:close()
    self.waiting = false
  end })
  self.waiting = true
  local backoff

  core.spawn(function()
    -- the wait may be over before this task first runs
    while not st.done do
      local evs, why = w:wait()
      if st.done then return end
      if not evs then
        st.failed = why
        wake:notify()
        return
      end
      for _, ev in ipairs(evs) do
        -- "" means the kernel dropped events: look again
        if ev.name == st.pred or ev.name == self.name or ev.name == "" then
          wake:notify()
          break
        end
      end
    end
  end, "queue watch")

  while true do
    if self.left then return nil, "left" end
    local ahead, aerr = self:_ahead()
    if not ahead then return nil, aerr end
    if #ahead == 0 then return true end
    local p = ahead[#ahead]
    local changed = p.name ~= st.pred
    if changed then backoff = nil end
    -- set before anything yields, so the watch task filters for the new name
    st.pred = p.name
    if changed and st.conn then
      st.conn:close()
      st.conn = nil
    end
    if not st.conn then listen_to(st, self.qdir, p.name, wake) end
    if changed and on_wait then
      local info = read_info(join(self.qdir, p.name), p)
      info.ahead = #ahead
      on_wait(info)
    end
    -- events can coalesce and a beacon can end before the kernel drops the lock, so
    -- every wake-up looks at the whole line again
    if st.conn then
      backoff = nil
    else
      backoff = backoff and math.min(backoff * 2, RECHECK) or FIRST_RECHECK
    end
    wake:wait(backoff)
    if st.failed then return nil, "queue watch failed: " .. tostring(st.failed) end
  end
end

-- q:replaced() -> "replaced" | nil, "left" | nil, err: yields until someone else removes
-- our wait file (a --force newcomer).
function Queue:replaced()
  if not core.in_task() then error("q:replaced: called outside a task", 2) end
  if self.left then return nil, "left" end
  local w <close>, err = fs.watch(self.qdir)
  if not w then return nil, err end
  local look = true
  while true do
    if self.left then return nil, "left" end
    if look and not fs.stat(self.path) then return "replaced" end
    local evs, why = w:wait()
    if not evs then return nil, why end
    look = false
    for _, ev in ipairs(evs) do
      if ev.name == self.name or ev.name == "" then look = true end
    end
  end
end

-- Removes the wait file (which wakes the successor), then drops the lock and the beacon.
-- The name is never handed out again, so removing it after a replacement is harmless.
function Queue:leave()
  if self.left then return true end
  self.left = true
  if self.path then fs.remove(self.path) end
  if self.lock then self.lock:close() end
  if self.server then
    self.server:close()
    fs.remove(self.sock)
  end
  for c in pairs(self.conns) do c:close() end
  return true
end

Queue.__close = Queue.leave

function Queue:__tostring()
  return string.format("queue %s %s (%s)", self.stack, tostring(self.name), self.left and "left" or "in line")
end

-- queue.list([dir,] stack) -> { {name, pid, host, since, alive}, ... } in line order
function queue.list(dir, stack)
  if stack == nil then dir, stack = nil, dir end
  dir = dir or queue.default_dir()
  if type(stack) ~= "string" then error("queue.list: stack must be a string", 2) end
  local qdir = join(dir, stack, "queue")
  local list, err, code = entries(qdir)
  if not list then
    if code == "ENOENT" then return {} end
    return nil, err
  end
  local out = {}
  for _, e in ipairs(list) do
    local path = join(qdir, e.name)
    local info, content = read_info(path, e)
    if content then
      local state = probe(path)
      if state == "dead" and fs.read(path) == "" then
        -- the owner left between our read and our probe, and the probe made an empty file
        fs.remove(path)
      else
        info.alive = state ~= "dead"
        out[#out + 1] = info
      end
    end
  end
  return out
end

return queue
