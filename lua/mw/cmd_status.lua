-- `mw status`: one row per component instance, from the running mw when there is one and
-- from the engine otherwise; and the row texts `mw inspect` reuses.
local core = require "mw.core"
local fs = require "mw.fs"
local docker = require "mw.docker"
local log = require "mw.log"
local lookup = require "mw.lookup"
local timestamp = require "mw.timestamp"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2

-- ---------------------------------------------------------------------------------------------
-- rows

-- The states in which a component has an uptime.
local UP = { running = true, healthy = true, unhealthy = true, starting = true }

-- "45s", "3m04s", "2h05m", "3d04h": how long something has lasted, for a table cell.
function M.duration(sec)
  if sec == nil then return "-" end
  sec = math.max(0, math.floor(sec))
  if sec < 60 then return string.format("%ds", sec) end
  if sec < 3600 then return string.format("%dm%02ds", sec // 60, sec % 60) end
  if sec < 86400 then return string.format("%dh%02dm", sec // 3600, sec % 3600 // 60) end
  return string.format("%dd%02dh", sec // 86400, sec % 86400 // 3600)
end

-- The exit code in a list entry's Status ("Exited (3) 5 seconds ago") -> n | nil.
function M.exit_code_of(status)
  return math.tointeger(tonumber(tostring(status or ""):match("^Exited %((%-?%d+)%)")))
end

local function copy(tbl)
  local out = {}
  for k, v in pairs(tbl) do out[k] = v end
  return out
end

-- Where a container's network namespace comes from, by its list entry's NetworkMode: its
-- network holder (mw.holder; `holders` by id), another container's, or its own ->
-- network ("held" | the mode | "own"), holder ({ name, container, state } | nil).
function M.network_of(ctr, holders)
  local mode = tostring((ctr.HostConfig or {}).NetworkMode or "")
  local joined = lookup.joined(ctr)
  local h = joined and holders and holders[joined]
  if h then
    return "held", { name = lookup.name_of(h), container = h.Id, state = h.State }
  end
  if joined then return "container:" .. joined:sub(1, 12) end    -- a holder gone: cut off
  if mode:find("^container:") or mode == "host" or mode == "none" then return mode end
  return "own"
end

-- A status row from a list entry (and its inspect, when there is one; `holders`: the stack's
-- network holders by id).
function M.engine_row(ctr, info, now, holders)
  local state = info and info.State or {}
  local comp, instance, key = lookup.identity(ctr.Labels)
  local row = {
    name = key, component = comp, instance = instance, container = ctr.Id, state = ctr.State or state.Status,
    source = "engine", engine_state = ctr.State or state.Status,
  }
  row.network, row.holder = M.network_of(ctr, holders)
  if row.state == "exited" or row.state == "dead" then
    row.exit_code = state.ExitCode or M.exit_code_of(ctr.Status)
    -- a clean exit is no failure (the state column still says how it ended)
    if row.exit_code == 0 and not state.OOMKilled and (ctr.Labels or {})["mw.job"] == "true" then
      row.state = "completed"      -- a job that ran to completion
    elseif row.exit_code ~= 0 or state.OOMKilled then
      row.last_failure = { reason = state.OOMKilled and "oom" or "exited", exit_code = row.exit_code,
                           time = timestamp.epoch(state.FinishedAt) }
    end
  elseif row.state == "running" then
    local started = timestamp.epoch(state.StartedAt)
    if started then row.uptime = math.max(0, now - started) end
  end
  return row
end

-- One stack's status: the running mw's rows when it runs, the engine's otherwise.
-- opts: stack (name), def (a loaded stack or nil), live (a live status file or nil),
-- containers (list entries of this stack), infos ({ [id] = inspect }), now.
function M.stack_status(opts)
  local rows, named = {}, {}
  local now = opts.now
  local order, n_order = {}, 0
  local function rank(comp)
    if comp and not order[comp] then n_order = n_order + 1 order[comp] = n_order end
  end
  if opts.def then for _, name in ipairs(opts.def.order) do rank(name) end end
  if opts.live then
    local updated = tonumber(opts.live.updated) or now
    for _, live_row in ipairs(lookup.list_of(opts.live.components)) do
      if type(live_row) == "table" and live_row.name then
        local row = copy(live_row)
        row.source = "mw"
        row.component = row.component or row.name
        row.instance = row.instance or 1
        -- the file is up to 5 s old: age what it said by as much
        if row.uptime and UP[row.state] then row.uptime = row.uptime + math.max(0, now - updated) end
        rows[#rows + 1] = row
        named[live_row.name] = true
        rank(row.component)
        -- its warm standby, a row of its own after it (mw.standby)
        local sb = type(row.standby) == "table" and row.standby or nil
        if sb then
          rows[#rows + 1] = { name = row.name .. " standby", component = row.component, instance = row.instance,
                              state = sb.state == "frozen" and "standby_frozen" or "standby_preparing",
                              container = sb.container, source = "mw", is_standby = true }
        end
      end
    end
  end
  local has = {}
  for _, ctr in ipairs(opts.containers or {}) do
    local comp, _, key = lookup.identity(ctr.Labels)
    if comp and not named[key] then
      local row = M.engine_row(ctr, (opts.infos or {})[ctr.Id], now, opts.holders)
      if ctr.Labels["mw.standby"] == "1" and ctr.State == "paused" then
        row.name, row.state, row.is_standby = key .. " standby", "standby_frozen", true
      else
        has[key] = true
      end
      rows[#rows + 1] = row
    end
  end
  if not opts.live and opts.def then
    for _, name in ipairs(opts.def.order) do
      for i = 1, (opts.def.components[name] or {}).scale or 1 do
        local key = i > 1 and (name .. "-" .. i) or name
        if not has[key] then
          rows[#rows + 1] = { name = key, component = name, instance = i, state = "not_created", source = "engine" }
        end
      end
    end
  end
  local last = math.maxinteger
  table.sort(rows, function(a, b)
    local rank_a, rank_b = order[a.component] or last, order[b.component] or last
    if rank_a ~= rank_b then return rank_a < rank_b end
    if a.component ~= b.component then return tostring(a.component) < tostring(b.component) end
    if a.instance ~= b.instance then return (a.instance or 1) < (b.instance or 1) end
    if (a.is_standby or false) ~= (b.is_standby or false) then return not a.is_standby end
    return tostring(a.container) < tostring(b.container)
  end)
  local live = opts.live
  return {
    stack = opts.stack, live = live ~= nil, pid = live and live.pid or nil,
    file = (live and live.file) or (opts.def and opts.def.file) or nil,
    since = live and live.since or nil, updated = live and live.updated or nil,
    components = rows,
  }
end

-- ---------------------------------------------------------------------------------------------
-- cells

local STATE_TEXT = {
  pending = "pending", waiting = "waiting for dependencies", starting = "starting", running = "running",
  healthy = "healthy", unhealthy = "unhealthy", restarting = "restarting", gave_up = "gave up",
  stopped = "stopped", completed = "completed", user_stopped = "stopped (by user)", not_created = "not created", created = "created (not started)",
  paused = "paused", dead = "dead", removing = "being removed",
  standby_frozen = "standby (frozen)", standby_preparing = "standby (preparing)",
}

function M.state_text(row)
  local state = row.state
  if state == "backoff" then
    if type(row.retry_at) == "number" then
      return "backing off until " .. os.date("%H:%M:%S", math.floor(row.retry_at))
    end
    return "backing off"
  end
  if state == "exited" then
    return row.exit_code and string.format("exited (code %d)", row.exit_code) or "exited"
  end
  return STATE_TEXT[state] or tostring(state or "?")
end

local REASON_TEXT = { oom = "out of memory", heartbeat = "heartbeat", removed = "removed",
                      disconnected = "disconnected" }

-- "exited 1, 12s ago", "heartbeat, 3m04s ago"
function M.failure_text(failure, now)
  if type(failure) ~= "table" then return "-" end
  local what
  if failure.reason == "exited" then
    what = failure.exit_code and ("exited " .. tostring(failure.exit_code)) or "exited"
  else
    what = REASON_TEXT[failure.reason] or tostring(failure.reason or "failed")
  end
  if type(failure.time) == "number" then what = what .. ", " .. M.duration(now - failure.time) .. " ago" end
  return what
end

-- "http 1.2ms netns": the kind, the last good answer's latency, and the path the probes take
-- (netns: inside the container's network namespace; published: its published port).
local function heartbeat_text(row)
  if not row.heartbeat then return "-" end
  local text = row.heartbeat
  if type(row.heartbeat_latency) == "number" then text = text .. " " .. log.dur(row.heartbeat_latency) end
  if type(row.heartbeat_via) == "string" then text = text .. " " .. row.heartbeat_via end
  return text
end

-- "held" (its network holder runs), "held (holder stopped)", "own", "service:db", "host": where
-- the instance's network namespace comes from.
local function network_text(row)
  if type(row.network) ~= "string" then return "-" end
  local holder = type(row.holder) == "table" and row.holder or nil
  if row.network == "held" and holder and holder.state and holder.state ~= "running" then
    return "held (holder " .. tostring(holder.state) .. ")"
  end
  return row.network
end

-- The cells of one row, in column order.
M.COLUMNS = { "COMPONENT", "STATE", "CONTAINER", "UPTIME", "RESTARTS", "LAST FAILURE", "HEARTBEAT", "NETWORK" }
function M.row_cells(row, now)
  return {
    row.name or "?", M.state_text(row),
    row.container and tostring(row.container):sub(1, 12) or "-",
    UP[row.state] and M.duration(row.uptime) or "-",
    row.restarts and tostring(row.restarts) or "-",
    M.failure_text(row.last_failure, now),
    heartbeat_text(row),
    network_text(row),
  }
end

-- Aligns cells in columns two spaces apart; paint(col, text, cells) may colour a padded cell
-- (the padding is measured on the plain text, so colours do not shift columns).
function M.table_lines(header, rows, paint)
  local width = {}
  for i, title in ipairs(header) do width[i] = #title end
  for _, cells in ipairs(rows) do
    for i, cell in ipairs(cells) do width[i] = math.max(width[i] or 0, utf8.len(cell) or #cell) end
  end
  local out = {}
  local function line(cells, is_header)
    local parts = {}
    for i, cell in ipairs(cells) do
      local pad = i < #cells and string.rep(" ", width[i] - (utf8.len(cell) or #cell)) or ""
      local text = cell
      if paint and not is_header then text = paint(i, cell, cells) end
      parts[i] = text .. pad
    end
    out[#out + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  line(header, true)
  for _, cells in ipairs(rows) do line(cells, false) end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- mw status

local GOOD = { healthy = true, running = true, completed = true }
local BAD = { unhealthy = true, gave_up = true, exited = true, dead = true }

-- The STATE column in colour: green when well, red when failed, dim when absent, else yellow.
local function paint(col, text, cells)
  if col ~= 2 then return text end
  local state = cells.row.state
  local color = GOOD[state] and 32 or BAD[state] and 31 or (state == "not_created" or state == "stopped") and 2 or 33
  return string.format("\27[%dm%s\27[0m", color, text)
end

function M.main(args, cli)
  local opts, rest = cli.parse(args, { stack = "value", json = true, ["state-dir"] = "value",
    coord = "value", ["coord-ca"] = "value", ["coord-cert"] = "value", ["coord-key"] = "value", ["coord-user"] = "value" })
  if not opts then cli.say(rest) return USAGE end
  local coord = require "mw.coord"
  local cfg, cerr = coord.config(opts)
  if cfg == nil then cli.say(cerr) return USAGE end
  local target, code = lookup.stack_arg(opts, rest, cli.say, "status")
  if not target then return code end
  if #rest > 0 then cli.say("status: unexpected argument " .. rest[1]) return USAGE end
  local engine = lookup.connect(cli.say)
  if not engine then return FAILURE end
  local dir = lookup.state_dir(opts)

  local all, err = lookup.containers(engine, target.name)
  if not all then cli.say(err) return FAILURE end
  -- the stacks to show: the one named, or every one with containers or a running mw
  local names, by_stack = {}, {}
  local function add(name) if not by_stack[name] then by_stack[name] = {} names[#names + 1] = name end end
  if target.name then add(target.name) end
  for _, ctr in ipairs(all) do
    local name = ctr.Labels["mw.stack"]
    add(name)
    table.insert(by_stack[name], ctr)
  end
  if not target.name then
    for _, name in ipairs(fs.list(dir) or {}) do
      -- ".": the queue's own files; "@": another installation's state (owner.state_dir)
      if not name:find("^[.@]") and lookup.live_status(dir, name) then add(name) end
    end
  end
  table.sort(names)

  -- the network holders, by id: a held container's NetworkMode names its holder's
  local holders = {}
  for _, h in ipairs(lookup.holders(engine, target.name) or {}) do holders[h.Id] = h end
  -- start times and exit details are in each container's inspect: all at once, not in turn
  local infos, tasks = {}, {}
  for _, ctr in ipairs(all) do
    if ctr.Labels["mw.component"] and (ctr.State == "running" or ctr.State == "exited" or ctr.State == "dead") then
      tasks[#tasks + 1] = core.spawn(function() infos[ctr.Id] = engine:inspect(ctr.Id) end, "inspect")
    end
  end
  for _, task in ipairs(tasks) do core.join(task) end

  local now = core.time()
  local stacks = {}
  for _, name in ipairs(names) do
    local live = lookup.live_status(dir, name)
    stacks[#stacks + 1] = M.stack_status {
      stack = name, def = target.def, live = live, containers = by_stack[name], infos = infos, now = now,
      holders = holders,
    }
    if not live then
      -- what `mw stop` stopped on the engine (mw.cmd_stop's marks) says so
      local marks = require("mw.cmd_stop").read_marks(dir, name)
      for _, row in ipairs(stacks[#stacks].components) do
        if row.state == "exited" and marks[row.component] then row.state = "user_stopped" end
      end
    end
  end
  if cfg then
    -- with --coord (or MW_COORD) the active mw may run on another host: etcd's election says who
    local client = coord.client(cfg)
    for _, status in ipairs(stacks) do
      local l, lerr = coord.leader(cfg, status.stack, client)
      if l then
        status.leader = docker.object { pid = l.pid, host = l.host, since = l.since, coord = cfg.url }
      elseif l == false then
        status.leader = false
      else
        status.leader_error = "etcd: " .. tostring(lerr)
      end
    end
  end
  if target.name and not target.def and #stacks[1].components == 0 and not stacks[1].live
     and not stacks[1].leader then
    cli.say("no stack " .. target.name .. ": no container of mw's and no mw running it")
    return FAILURE
  end

  if opts.json then
    local out = docker.array()
    for i, status in ipairs(stacks) do
      local comps = docker.array()
      for j, row in ipairs(status.components) do comps[j] = docker.object(row) end
      status.components = comps
      out[i] = docker.object(status)
    end
    lookup.write(docker.encode(docker.object { stacks = out }) .. "\n")
    return OK
  end

  if #stacks == 0 then
    cli.say("no stacks: mw has no containers on this engine and no mw is running")
    return OK
  end
  local color = lookup.color_ok(1)
  local lines = {}
  for i, status in ipairs(stacks) do
    if i > 1 then lines[#lines + 1] = "" end
    if status.live then
      lines[#lines + 1] = string.format("stack %s: supervised by mw (pid %s) since %s", status.stack,
        tostring(status.pid),
        type(status.since) == "number" and os.date("%Y-%m-%d %H:%M:%S", math.floor(status.since)) or "?")
    else
      lines[#lines + 1] = string.format("stack %s: no mw running; state from the engine", status.stack)
    end
    if status.leader then
      lines[#lines + 1] = string.format("active mw (etcd election): pid %s on %s since %s", tostring(status.leader.pid),
        tostring(status.leader.host),
        type(status.leader.since) == "number" and os.date("%Y-%m-%d %H:%M:%S", math.floor(status.leader.since)) or "?")
    elseif status.leader == false then
      lines[#lines + 1] = "active mw (etcd election): none"
    elseif status.leader_error then
      lines[#lines + 1] = "active mw (etcd election): unknown, " .. status.leader_error
    end
    local rows = {}
    for j, row in ipairs(status.components) do
      rows[j] = M.row_cells(row, now)
      rows[j].row = row
    end
    for _, line in ipairs(M.table_lines(M.COLUMNS, rows, color and paint or nil)) do lines[#lines + 1] = line end
  end
  lookup.write(table.concat(lines, "\n") .. "\n")
  return OK
end

return M
