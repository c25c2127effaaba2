-- An instance of a component, as the supervisor keeps it: its fields, its states and the one
-- table of the transitions between them (state x event -> next state and action, as s6 and
-- OTP's gen_statem write theirs down), and the helpers every supervisor file shares.
local core = require "mw.core"
local log = require "mw.log"

local M = {}

-- The states, in the order a healthy start passes them, then the rest.
M.STATES = {
  "pending",     -- made, not yet asked to come up
  "waiting",     -- bring-up under way: image, dependencies, or the engine coming back
  "starting",    -- its container runs; the heartbeat has not answered yet
  "running",     -- its container runs; it has no heartbeat
  "healthy",     -- its container runs and the heartbeat answers
  "unhealthy",   -- healthy until a probe failed; not yet failed (misses x interval)
  "restarting",  -- a recovery, a replacement or an escalation is stopping or starting it
  "backoff",     -- failed; the policy's action waits out its delay
  "gave_up",     -- failed; the policy gave up (only a removal still counts as a failure)
  "stopped",     -- ended, and the policy said to leave it (only a removal still counts)
  "completed",   -- a job (job = true) whose container exited 0: done, never restarted
  "user_stopped", -- stopped by the user (mw stop): nothing restarts it until mw start or restart
  "gone",        -- retired: no longer in the stack or beyond its scale (see the race below)
}

-- Every state but the first and the last: an instance that was brought up and is not retired.
-- Sup:failure acts in each (gave_up and stopped only for a removal); a start, a replacement or
-- an engine gone away may come in each.
local LIVE = { "waiting", "starting", "running", "healthy", "unhealthy", "restarting", "backoff",
               "gave_up", "stopped", "completed" }
local ALL_BUT_GONE = { "pending", table.unpack(LIVE) }

-- The transitions: an event in one of `from` moves the instance to `to`; `action` is the
-- method that makes the move and what it does next. A change not listed here is a bug: tests
-- raise on it (M.strict), a running mw logs it once and goes on.
M.TRANSITIONS = {
  { event = "bring_up", from = { "pending" }, to = "waiting",
    action = "Sup:bring_up: resolve the image, wait for dependencies, then Sup:ensure" },
  { event = "engine_away", from = LIVE, to = "waiting",
    action = "Sup:start_failed: no policy; bring it up again once the engine answers" },
  -- a start, an adoption, a restart, a recreate or a replacement: Sup:post_start
  { event = "started", from = LIVE, to = "starting",
    action = "Sup:post_start: heartbeats begin, the pid is watched" },
  { event = "started", from = LIVE, to = "running",
    action = "Sup:post_start: no heartbeat; the pid is watched" },
  { event = "answered", from = { "starting", "unhealthy" }, to = "healthy",
    action = "Sup:good: misses cleared" },
  { event = "missed", from = { "healthy" }, to = "unhealthy",
    action = "Sup:miss: Sup:hb_check fails it once misses x interval pass without an answer" },
  { event = "give_up", from = LIVE, to = "gave_up",
    action = "Sup:schedule: the policy gave up; nothing restarts it" },
  { event = "ignore", from = LIVE, to = "stopped",
    action = "Sup:schedule: the policy said to leave it (a clean exit under on_failure)" },
  { event = "complete", from = { "waiting", "starting", "running", "healthy", "unhealthy", "restarting", "backoff" },
    to = "completed",
    action = "Sup:complete: a job exited 0 (or its container of this definition already had); no policy, no restart" },
  { event = "failed", from = LIVE, to = "backoff",
    action = "Sup:schedule: the policy's action runs after its delay (Sup:act)" },
  -- (from an up state: a start-first replacement brought it back while its recovery waited)
  { event = "recover", from = { "backoff", "starting", "running", "healthy", "unhealthy" }, to = "restarting",
    action = "Sup:act: restart, recreate, reconnect, promote a standby or escalate" },
  { event = "quiet_stop", from = ALL_BUT_GONE, to = "restarting",
    action = "Sup:quiet_stop: stopped as a dependent of a failed one; restarted after it" },
  { event = "replace", from = LIVE, to = "restarting",
    action = "Sup:replace: stop-first replacement by its new definition" },
  { event = "reconnected", from = { "restarting" }, to = "starting",
    action = "Sup:act: back on the network; heartbeats begin again" },
  { event = "reconnected", from = { "restarting" }, to = "running",
    action = "Sup:act: back on the network" },
  { event = "reloaded", from = { "running" }, to = "starting",
    action = "Sup:apply: a heartbeat was added; it must answer" },
  { event = "reloaded", from = { "starting", "healthy", "unhealthy" }, to = "running",
    action = "Sup:apply: its heartbeat was removed" },
  -- what the user asks (mw stop / start / restart, the API, the dashboard): mw.userops
  { event = "user_stop", from = ALL_BUT_GONE, to = "user_stopped",
    action = "Sup:user_stop: stopped gracefully after its dependents; no failure, no restart" },
  { event = "user_start", from = { "user_stopped", "gave_up", "stopped" }, to = "waiting",
    action = "Sup:user_start: failure history cleared; brought up once its dependencies are" },
  { event = "user_restart", from = { "user_stopped", table.unpack(LIVE) }, to = "restarting",
    action = "Sup:user_restart: stopped gracefully, started again; failure history cleared" },
  { event = "retire", from = { "user_stopped", table.unpack(ALL_BUT_GONE) }, to = "gone",
    action = "Sup:retire: supervision ends; its container is stopped and removed" },
  -- A race the code has (seen in tests/engine/test_reload.lua): a recovery that was already in
  -- Sup:act when the instance was retired cannot be cancelled (its task cleared inst.runner)
  -- and finishes with a start. Written down so it is known; gone should be final.
  { event = "started", from = { "gone" }, to = "starting",
    action = "Sup:post_start: a recovery under way when it was retired finished (a race)" },
  { event = "started", from = { "gone" }, to = "running",
    action = "Sup:post_start: a recovery under way when it was retired finished (a race)" },
}

-- allowed[from][event][to] = the row
local allowed = {}
for _, state in ipairs(M.STATES) do allowed[state] = {} end
for _, row in ipairs(M.TRANSITIONS) do
  for _, from in ipairs(row.from) do
    local by_event = allowed[from]
    by_event[row.event] = by_event[row.event] or {}
    by_event[row.event][row.to] = row
  end
end

-- Whether the table has the move (nil, the row otherwise).
function M.declared(from, event, to)
  local by_event = allowed[from]
  return by_event and by_event[event] and by_event[event][to] or nil
end

-- Set by tests: an undeclared transition raises, and is recorded in M.undeclared.
M.strict = os.getenv("MW_STATE_CHECK") == "strict"
M.undeclared = {}
local warned = {}

-- The one way an instance's state changes: `event` (a row of M.TRANSITIONS) moves it to `to`.
-- Staying in the state it is in is no transition (and nudges no one).
function M.transition(sup, inst, event, to)
  local from = inst.state
  if from == to then return end
  if not M.declared(from, event, to) then
    local what = string.format("%s --%s--> %s", tostring(from), tostring(event), tostring(to))
    M.undeclared[#M.undeclared + 1] = { key = inst.key, from = from, event = event, to = to }
    if M.strict then error("undeclared state transition of " .. tostring(inst.key) .. ": " .. what, 2) end
    if not warned[what] then
      warned[what] = true
      log.warn(inst.key, "state", "undeclared state transition " .. what .. " (see mw.instance); going on")
    end
  end
  inst.state = to
  inst.state_since = core.time()
  sup:changed(inst)
end

-- A new instance of a group. Every field an instance has, who writes it and what it means:
function M.new(group, index)
  return {
    -- identity (Sup:_instance); def follows a reload (Sup:apply)
    name = group.name,       -- the component's name
    index = index,           -- 1.. within the component
    key = index == 1 and group.name or (group.name .. "-" .. index),   -- name in logs and status
    group = group,           -- the component's group { name, def, desired, instances, ... }
    def = group.def,         -- the component's definition (mw.stack)
    -- state: only M.transition writes these
    state = "pending",       -- one of M.STATES
    state_since = nil,       -- core.time() of the last change
    -- the container (mw.containers)
    id = nil,                -- its container's ID, once created or adopted
    hash = nil,              -- the config hash of the definition that container runs
    overrides = nil,         -- { memory, cpus } a policy asked for, for the next container (Sup:decide)
    pid = nil,               -- its main process's pid on the host (Sup:post_start)
    pidw = nil,              -- the pidfd watcher of that process (Sup:watch_pid)
    started_wall = nil,      -- wall time the container started (Sup:post_start)
    up_since = nil,          -- core.now() it came up; nil once it failed (Sup:post_start, Sup:failure)
    brought_up = nil,        -- true once its first bring-up began (Sup:bring_up)
    first_start = nil,       -- true during that first create and start (Sup:bring_up; read by Sup:coming_up)
    replacing = nil,         -- true while a rolling replacement works on it (Sup:roll)
    cpu_prev = nil,          -- { usage, t }: the last CPU sample (Sup:sample)
    -- what the engine told (mw.events, Sup:watch_pid)
    quiet = nil,             -- a container ID whose death and events are mw's own doing (many writers)
    oom = nil,               -- an oom event came for the running container (Sup:on_container_event)
    killed = nil,            -- id of the container the engine last sent a signal (its "kill" event): its die may be a removal
    died = nil,              -- { id, exit_code, oom }: a death seen mid-recovery, for Sup:settle
    down = nil,              -- { id, time }: its main process exited, the die event not yet here (Sup:watch_pid)
    dead_id = nil,           -- a container known stopped: a restart in place skips its inspect
    gone = nil,              -- a destroy event came mid-recovery (Sup:on_container_event)
    -- failures and recovery (mw.supervisor)
    handling = nil,          -- true while a failure is being handled: further ones are ignored
    runner = nil,            -- the task bringing it up or recovering it (cancelled on a new failure)
    pending = nil,           -- { action, delay, since, record }: the recovery waiting in backoff
    retry_at = nil,          -- wall time that recovery runs (Sup:schedule)
    restarts = 0,            -- recoveries begun (Sup:act)
    failures = nil,          -- failures counted (Sup:failure)
    history = {},            -- the failures a policy sees: { time, reason, uptime }, trimmed
    last_failure = nil,      -- { reason, exit_code, time, message } for status (Sup:failure)
    hb_restart = nil,        -- true while a recovery for a heartbeat failure is in flight
    -- a warm standby (mw.standby)
    standby = nil,           -- { id, hash, state = "preparing" | "frozen", port, since }: its frozen spare
    standby_task = nil,      -- the task preparing it (Sup:standby_sync)
    -- heartbeats (mw.heartbeat)
    hb = {},                 -- the heartbeat's state: misses, host_port, gen, slot, task, latency,
                             -- last_ok, last_ok_at, last_error, held, check_failed, body,
                             -- via ("netns" | "published"), netns, netns_error (Sup:open_hb_netns)
    netns = nil,             -- the open network namespace of its main process, on the netns
                             -- path (Sup:open_hb_netns; closed by Sup:stop_heartbeat)
    netns_warned = nil,      -- true once it was said that its namespace cannot be entered
    probes = {},             -- probes in flight: { sent, task, done } -> true
    missed = nil,            -- heartbeats missed, ever (status)
    failed_probes = nil,     -- probes answered badly, ever (status)
  }
end

-- The instances of a group in index order.
function M.instances(group)
  local out = {}
  for i in pairs(group.instances) do out[#out + 1] = i end
  table.sort(out)
  for k, i in ipairs(out) do out[k] = group.instances[i] end
  return out
end

function M.is_up(inst)
  return inst.state == "running" or inst.state == "healthy" or inst.state == "starting" or inst.state == "unhealthy"
end

-- The state table as markdown (docs/internals.md shows it): one row per state, one column
-- per event, the next state in each cell.
function M.markdown()
  local events, seen = {}, {}
  for _, row in ipairs(M.TRANSITIONS) do
    if not seen[row.event] then seen[row.event] = true events[#events + 1] = row.event end
  end
  local lines = { "| state | " .. table.concat(events, " | ") .. " |",
                  "|---" .. string.rep("|---", #events) .. "|" }
  for _, state in ipairs(M.STATES) do
    local cells = {}
    for i, event in ipairs(events) do
      local tos = {}
      for _, to in ipairs(M.STATES) do
        if M.declared(state, event, to) and to ~= state then tos[#tos + 1] = to end
      end
      cells[i] = #tos > 0 and table.concat(tos, " / ") or ""
    end
    lines[#lines + 1] = "| " .. state .. " | " .. table.concat(cells, " | ") .. " |"
  end
  return table.concat(lines, "\n")
end

return M
