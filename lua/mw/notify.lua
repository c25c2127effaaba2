-- systemd's notify protocol for `mw run` under a Type=notify unit: READY=1 once the stack is up,
-- a one-line STATUS=, WATCHDOG=1 pings, and STOPPING=1 on the way out.
local core = require "mw.core"
local dgram = require "mw.dgram"
local log = require "mw.log"

local M = {}
local N = {}
N.__index = N

local STATUS_EVERY = 2       -- how often the STATUS line is refreshed (only sent when it changed)

-- Reads the unit's environment. getenv defaults to os.getenv (tests pass their own).
-- -> { socket =, watchdog = seconds | nil } | nil when mw does not run under systemd's notify.
function M.config(getenv, pid)
  getenv = getenv or os.getenv
  local sock = getenv("NOTIFY_SOCKET")
  if not sock or sock == "" then return nil end
  if not (sock:sub(1, 1) == "/" or sock:sub(1, 1) == "@") then
    return nil, "NOTIFY_SOCKET=" .. sock .. " is neither a path nor an abstract socket; not notifying systemd"
  end
  local cfg = { socket = sock }
  local usec = tonumber(getenv("WATCHDOG_USEC") or "")
  local wpid = tonumber(getenv("WATCHDOG_PID") or "")
  -- the watchdog is ours unless systemd says it is another process's
  if usec and usec > 0 and (not wpid or wpid == (pid or core.pid())) then cfg.watchdog = usec / 1e6 end
  return cfg
end

-- Starts notifying when NOTIFY_SOCKET is set: the watchdog pings begin at once (waiting in the
-- stack's queue counts as alive). -> notifier | nil
function M.open(getenv)
  local cfg, err = M.config(getenv)
  if not cfg then
    if err then log.warn(nil, "systemd", err) end
    return nil
  end
  local self = setmetatable({ socket = cfg.socket, watchdog = cfg.watchdog, tasks = {} }, N)
  if self.watchdog then
    -- half the timeout, as systemd asks: one late ping is not yet a miss
    local every = self.watchdog / 2
    self.tasks[#self.tasks + 1] = core.spawn(function()
      while true do
        self:send("WATCHDOG=1")
        core.sleep(every)
      end
    end, "systemd-watchdog")
  end
  return self
end

-- Sends one message; a failure is said once, then mw goes on (systemd may have gone away).
function N:send(text)
  local ok, err = dgram.send(self.socket, text)
  if not ok and not self.warned then
    self.warned = true
    log.warn(nil, "systemd", "cannot notify systemd: " .. tostring(err))
  end
  return ok
end

local UP = { running = true, healthy = true, completed = true }

local function status_line(snap)
  local n, up, backoff, gave_up = 0, 0, 0, 0
  for _, c in ipairs(snap.components or {}) do
    n = n + 1
    if UP[c.state] then up = up + 1 end
    if c.state == "backoff" or c.state == "restarting" then backoff = backoff + 1 end
    if c.state == "gave_up" then gave_up = gave_up + 1 end
  end
  local s = string.format("stack %s: %d/%d components up", tostring(snap.stack), up, n)
  if backoff > 0 then s = s .. string.format(", %d restarting", backoff) end
  if gave_up > 0 then s = s .. string.format(", %d given up", gave_up) end
  return s
end
M.status_line = status_line

-- Once the supervisor has the stack up (every component healthy, running or settled):
-- READY=1 with a STATUS line; then the STATUS line follows the stack.
function N:supervise(sup)
  self.tasks[#self.tasks + 1] = core.spawn(function()
    self:send("STATUS=starting stack " .. tostring(sup:snapshot().stack))
    sup:wait_ready()
    if self.closed then return end
    local line = status_line(sup:snapshot())
    self:send("READY=1\nSTATUS=" .. line)
    log.info(nil, "systemd", "told systemd the stack is ready")
    while true do
      core.sleep(STATUS_EVERY)
      local now = status_line(sup:snapshot())
      if now ~= line then
        line = now
        self:send("STATUS=" .. line)
      end
    end
  end, "systemd-status")
end

-- STOPPING=1 and the tasks end; safe twice.
function N:close(why)
  if self.closed then return end
  self.closed = true
  self:send("STOPPING=1\nSTATUS=" .. (why or "stopping"))
  local me = core.current()
  for _, t in ipairs(self.tasks) do
    if t ~= me and t:status() ~= "done" and t:status() ~= "failed" and t:status() ~= "cancelled" then core.cancel(t) end
  end
  self.tasks = {}
end

return M
