-- The commands that act on stacks from outside `mw run`: status, inspect, logs, kill, destroy.
-- They find everything on the engine by label, and read what a running mw knows from the
-- status file it keeps in its state directory.
local core = require "mw.core"
local fs = require "mw.fs"
local http = require "mw.http"
local docker = require "mw.docker"
local queue = require "mw.queue"
local log = require "mw.log"
local owner = require "mw.owner"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2
-- The writer refreshes the file at least every 5 s: a file much older than that belongs to
-- a dead mw whose pid the kernel has given to another process.
local STALE_AFTER = 30
local INSPECT_TIMEOUT = 5
local DEFAULT_PATH = "/debug/vars"        -- the seed's introspection path
local EVENTS_RETRY = 1                    -- logs -f: pause before reconnecting to /events

-- ---------------------------------------------------------------------------------------------
-- small pure helpers (exported in M._test)

-- "45s", "3m04s", "2h05m", "3d04h": how long something has lasted, for a table cell.
local function duration(sec)
  if sec == nil then return "-" end
  sec = math.max(0, math.floor(sec))
  if sec < 60 then return string.format("%ds", sec) end
  if sec < 3600 then return string.format("%dm%02ds", sec // 60, sec % 60) end
  if sec < 86400 then return string.format("%dh%02dm", sec // 3600, sec % 3600 // 60) end
  return string.format("%dd%02dh", sec // 86400, sec % 86400 // 3600)
end

-- The exit code in a list entry's Status ("Exited (3) 5 seconds ago") -> n | nil.
local function exit_code_of(status)
  return math.tointeger(tonumber(tostring(status or ""):match("^Exited %((%-?%d+)%)")))
end

-- Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): exact, and free of
-- the local time zone that os.time would apply.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- An engine timestamp ("2026-11-30T01:02:03.123456789Z", or with a +hh:mm offset) ->
-- whole seconds since the epoch, nanoseconds | nil. The zero time ("0001-01-01T00:00:00Z",
-- a container never started) is nil.
local function parse_time(s)
  local y, mo, d, h, mi, sec, frac, zone = tostring(s or ""):match(
    "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)(.*)$")
  if not y then return nil end
  y = tonumber(y)
  if y < 1970 then return nil end
  local t = days_from_civil(y, tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60
    + tonumber(sec)
  local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
  if sign then
    local off = tonumber(zh) * 3600 + tonumber(zm) * 60
    t = sign == "+" and t - off or t + off
  end
  local nanos = tonumber(((frac or "") .. "000000000"):sub(1, 9))
  return math.tointeger(t), math.tointeger(nanos)
end

-- An engine timestamp -> epoch seconds as a float | nil.
local function epoch(s)
  local t, ns = parse_time(s)
  if not t then return nil end
  return t + ns / 1e9
end

-- A log line's timestamp as a key that orders correctly as a string, and as the "since"
-- the logs endpoint takes (seconds with nanoseconds) -> key, since | nil.
local function log_time(ts)
  local t, ns = parse_time(ts)
  if not t then return nil end
  local since = string.format("%d.%09d", t, ns)
  return string.format("%012d.%09d", t, ns), since
end

-- The same key for a moment given as epoch seconds (a float).
local function time_key(t)
  local s = math.floor(t)
  local ns = math.floor((t - s) * 1e9)
  return string.format("%012d.%09d", s, ns), string.format("%d.%09d", s, ns)
end

-- Whether a status file describes a running mw: its pid is alive and it was written lately.
local function is_live(doc, now, alive)
  if type(doc) ~= "table" then return false end
  local pid = type(doc.pid) == "number" and math.tointeger(doc.pid)
  if not pid or pid <= 0 then return false end
  if type(doc.updated) == "number" and now - doc.updated > STALE_AFTER then return false end
  return alive(pid) and true or false
end

local function pid_alive(pid)
  local ok, err = core.kill(pid, "0")
  -- EPERM: the process exists but is another user's
  return ok or (err ~= nil and err:find("not permitted", 1, true) ~= nil)
end

local function list_of(v)
  if type(v) ~= "table" then return {} end
  return v
end

-- Which stack a component name means, from the containers carrying it -> stack | nil, message.
local function pick_stack(comp, list, stack)
  local stacks, seen = {}, {}
  for _, x in ipairs(list) do
    local s = (x.Labels or {})["mw.stack"]
    if s and not seen[s] then
      seen[s] = true
      stacks[#stacks + 1] = s
    end
  end
  table.sort(stacks)
  if #stacks == 0 then
    if stack then return nil, string.format("no component %s in stack %s", comp, stack) end
    return nil, string.format("no component %s: no container of mw's has that name", comp)
  end
  if #stacks > 1 then
    return nil, string.format("component %s is in stacks %s: say which with --stack", comp, table.concat(stacks, ", "))
  end
  return stacks[1]
end

-- A container's component, instance number and key ("web", "web-2": instance 1 is named
-- like its component) from its labels; containers from before scaling have no instance.
local function identity(labels)
  labels = labels or {}
  local comp = labels["mw.component"]
  local idx = math.tointeger(tonumber(labels["mw.instance"] or "")) or 1
  return comp, idx, (comp and idx > 1) and (comp .. "-" .. idx) or comp
end

-- The container a name means now: a running one first, then the lowest instance, then the
-- newest.
local function current(list)
  local best, best_idx
  for _, x in ipairs(list) do
    local _, idx = identity(x.Labels)
    if not best then
      best, best_idx = x, idx
    else
      local xr, br = x.State == "running", best.State == "running"
      local better
      if xr ~= br then better = xr
      elseif idx ~= best_idx then better = idx < best_idx
      else better = (x.Created or 0) > (best.Created or 0) end
      if better then best, best_idx = x, idx end
    end
  end
  return best
end

local UP = { running = true, healthy = true, unhealthy = true, starting = true }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A status row from a list entry (and its inspect, when there is one).
local function engine_row(x, info, now)
  local st = info and info.State or {}
  local comp, idx, key = identity(x.Labels)
  local row = {
    name = key, component = comp, instance = idx, container = x.Id, state = x.State or st.Status,
    source = "engine", engine_state = x.State or st.Status,
  }
  if row.state == "exited" or row.state == "dead" then
    row.exit_code = st.ExitCode or exit_code_of(x.Status)
    -- a clean exit is no failure (the state column still says how it ended)
    if row.exit_code ~= 0 or st.OOMKilled then
      row.last_failure = { reason = st.OOMKilled and "oom" or "exited", exit_code = row.exit_code,
                           time = epoch(st.FinishedAt) }
    end
  elseif row.state == "running" then
    local started = epoch(st.StartedAt)
    if started then row.uptime = math.max(0, now - started) end
  end
  return row
end

-- One stack's status: the running mw's rows when it runs, the engine's otherwise.
-- o: stack (name), def (a loaded stack or nil), live (a live status file or nil),
-- containers (list entries of this stack), infos ({ [id] = inspect }), now.
local function stack_status(o)
  local rows, named = {}, {}
  local now = o.now
  local order, n_order = {}, 0
  local function rank(comp)
    if comp and not order[comp] then n_order = n_order + 1 order[comp] = n_order end
  end
  if o.def then for _, n in ipairs(o.def.order) do rank(n) end end
  if o.live then
    local updated = tonumber(o.live.updated) or now
    for _, c in ipairs(list_of(o.live.components)) do
      if type(c) == "table" and c.name then
        local row = copy(c)
        row.source = "mw"
        row.component = row.component or row.name
        row.instance = row.instance or 1
        -- the file is up to 5 s old: age what it said by as much
        if row.uptime and UP[row.state] then row.uptime = row.uptime + math.max(0, now - updated) end
        rows[#rows + 1] = row
        named[c.name] = true
        rank(row.component)
      end
    end
  end
  local has = {}
  for _, x in ipairs(o.containers or {}) do
    local comp, _, key = identity(x.Labels)
    if comp and not named[key] then
      rows[#rows + 1] = engine_row(x, (o.infos or {})[x.Id], now)
      has[key] = true
    end
  end
  if not o.live and o.def then
    for _, n in ipairs(o.def.order) do
      for i = 1, (o.def.components[n] or {}).scale or 1 do
        local key = i > 1 and (n .. "-" .. i) or n
        if not has[key] then
          rows[#rows + 1] = { name = key, component = n, instance = i, state = "not_created", source = "engine" }
        end
      end
    end
  end
  local big = math.maxinteger
  table.sort(rows, function(a, b)
    local ia, ib = order[a.component] or big, order[b.component] or big
    if ia ~= ib then return ia < ib end
    if a.component ~= b.component then return tostring(a.component) < tostring(b.component) end
    if a.instance ~= b.instance then return (a.instance or 1) < (b.instance or 1) end
    return tostring(a.container) < tostring(b.container)
  end)
  return {
    stack = o.stack, live = o.live ~= nil, pid = o.live and o.live.pid or nil,
    file = (o.live and o.live.file) or (o.def and o.def.file) or nil,
    since = o.live and o.live.since or nil, updated = o.live and o.live.updated or nil,
    components = rows,
  }
end

local STATE_TEXT = {
  pending = "pending", waiting = "waiting for dependencies", starting = "starting", running = "running",
  healthy = "healthy", unhealthy = "unhealthy", restarting = "restarting", gave_up = "gave up",
  stopped = "stopped", not_created = "not created", created = "created (not started)",
  paused = "paused", dead = "dead", removing = "being removed",
}

local function state_text(row)
  local s = row.state
  if s == "backoff" then
    if type(row.retry_at) == "number" then
      return "backing off until " .. os.date("%H:%M:%S", math.floor(row.retry_at))
    end
    return "backing off"
  end
  if s == "exited" then
    return row.exit_code and string.format("exited (code %d)", row.exit_code) or "exited"
  end
  return STATE_TEXT[s] or tostring(s or "?")
end

local REASON_TEXT = { oom = "out of memory", heartbeat = "heartbeat", removed = "removed",
                      disconnected = "disconnected" }

-- "exited 1, 12s ago", "heartbeat, 3m04s ago"
local function failure_text(f, now)
  if type(f) ~= "table" then return "-" end
  local what
  if f.reason == "exited" then
    what = f.exit_code and ("exited " .. tostring(f.exit_code)) or "exited"
  else
    what = REASON_TEXT[f.reason] or tostring(f.reason or "failed")
  end
  if type(f.time) == "number" then what = what .. ", " .. duration(now - f.time) .. " ago" end
  return what
end

local function heartbeat_text(row)
  if not row.heartbeat then return "-" end
  if type(row.heartbeat_latency) == "number" then return row.heartbeat .. " " .. log.dur(row.heartbeat_latency) end
  return row.heartbeat
end

-- The cells of one row, in column order.
local COLUMNS = { "COMPONENT", "STATE", "CONTAINER", "UPTIME", "RESTARTS", "LAST FAILURE", "HEARTBEAT" }
local function row_cells(row, now)
  return {
    row.name or "?", state_text(row),
    row.container and tostring(row.container):sub(1, 12) or "-",
    UP[row.state] and duration(row.uptime) or "-",
    row.restarts and tostring(row.restarts) or "-",
    failure_text(row.last_failure, now),
    heartbeat_text(row),
  }
end

-- Aligns cells in columns two spaces apart; paint(col, text) may colour a padded cell (the
-- padding is measured on the plain text, so colours do not shift columns).
local function table_lines(header, rows, paint)
  local width = {}
  for i, h in ipairs(header) do width[i] = #h end
  for _, r in ipairs(rows) do
    for i, cell in ipairs(r) do width[i] = math.max(width[i] or 0, utf8.len(cell) or #cell) end
  end
  local out = {}
  local function line(cells, is_header, r)
    local parts = {}
    for i, cell in ipairs(cells) do
      local pad = i < #cells and string.rep(" ", width[i] - (utf8.len(cell) or #cell)) or ""
      local text = cell
      if paint and not is_header then text = paint(i, cell, r) end
      parts[i] = text .. pad
    end
    out[#out + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  line(header, true)
  for _, r in ipairs(rows) do line(r, false, r) end
  return out
end

-- The JSON text of a pretty-printed value, keeping the received order of keys and the
-- exact spelling of numbers: it works on the text, and expects valid JSON.
local function indent_json(s)
  local out, depth, i, n = {}, 0, 1, #s
  local function newline() out[#out + 1] = "\n" .. string.rep("  ", depth) end
  while i <= n do
    local ch = s:sub(i, i)
    if ch == '"' then
      local j = i + 1
      while true do
        local k = s:find('["\\]', j)
        if not k then j = n break end
        if s:sub(k, k) == "\\" then j = k + 2 else j = k break end
      end
      out[#out + 1] = s:sub(i, j)
      i = j + 1
    elseif ch == "{" or ch == "[" then
      local close = ch == "{" and "}" or "]"
      local k = s:find("%S", i + 1)
      if k and s:sub(k, k) == close then
        out[#out + 1] = ch .. close
        i = k + 1
      else
        depth = depth + 1
        out[#out + 1] = ch
        newline()
        i = i + 1
      end
    elseif ch == "}" or ch == "]" then
      depth = depth - 1
      newline()
      out[#out + 1] = ch
      i = i + 1
    elseif ch == "," then
      out[#out + 1] = ","
      newline()
      i = i + 1
    elseif ch == ":" then
      out[#out + 1] = ": "
      i = i + 1
    elseif ch:find("%s") then
      i = i + 1
    else
      local k = s:find('[%s,:%[%]{}"]', i) or n + 1
      out[#out + 1] = s:sub(i, k - 1)
      i = k
    end
  end
  return table.concat(out) .. "\n"
end

-- The host port a container port is published on, reachable at 127.0.0.1 -> n | nil.
local function loopback_port(info, port)
  local ports = info and info.NetworkSettings and info.NetworkSettings.Ports
  local b = type(ports) == "table" and ports[tostring(port) .. "/tcp"]
  if type(b) ~= "table" then return nil end
  for _, x in ipairs(b) do
    if x.HostIp == "127.0.0.1" or x.HostIp == "0.0.0.0" or x.HostIp == "" or x.HostIp == nil then
      return math.tointeger(tonumber(x.HostPort))
    end
  end
  return nil
end

-- A variable of the container's environment (Config.Env, "K=V" strings) -> value | nil.
local function env_of(info, key)
  for _, kv in ipairs(info and info.Config and info.Config.Env or {}) do
    local k, v = kv:match("^([^=]*)=(.*)$")
    if k == key then return v end
  end
  return nil
end

-- Where a component's introspection endpoint is -> { port = host port, path } | nil, why.
-- The live row (from a running mw) is the best source, then the stack's definition, then
-- what the container itself says (INTROSPECTION_PORT); the path defaults to the seed's.
local function endpoint(comp, row, def, info)
  local hb
  if def then
    hb = def.heartbeat
  elseif row then
    hb = row.heartbeat and { kind = row.heartbeat, path = row.heartbeat_path } or false
  end
  if hb == false then return nil, "component " .. comp .. " has no heartbeat: there is no endpoint to inspect" end
  if hb and hb.kind ~= "http" then
    return nil, string.format("component %s has a %s heartbeat, not an HTTP endpoint to inspect", comp, hb.kind)
  end
  local path = (row and row.heartbeat_path) or (hb and hb.path) or DEFAULT_PATH
  local port
  if row and row.heartbeat_port and (not info or row.container == info.Id) then
    port = math.tointeger(row.heartbeat_port)
  end
  if not port then
    local cport = (hb and hb.port) or tonumber(env_of(info, "INTROSPECTION_PORT") or "")
    if not cport then
      return nil, "component " .. comp .. " has no heartbeat: there is no endpoint to inspect"
    end
    port = loopback_port(info, cport)
    if not port then
      return nil, string.format("component %s: its heartbeat port %s is not published on 127.0.0.1", comp,
        tostring(cport))
    end
  end
  return { port = port, path = path }
end

-- Which of destroy's targets its arguments mean -> { stack = name | all = true } | nil, why.
local function destroy_target(o, file_stack)
  local n = (o.all and 1 or 0) + (o.stack and 1 or 0) + (file_stack and 1 or 0)
  if n > 1 then return nil, "give one of a stack file, --stack and --all" end
  if o.all then return { all = true } end
  return { stack = o.stack or file_stack }
end

-- Whether an object carries mw's labels for the target (checked again on each object before
-- it is removed, whatever the filter said).
local function owned(labels, target)
  if not owner.owns(labels) then return false end
  local s = labels["mw.stack"]
  if type(s) ~= "string" or s == "" then return false end
  return target.all or s == target.stack
end

local COLORS = { 36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94 }

-- The prefix of a log line: the component padded to the longest name.
local function log_prefix(name, width, color, stderr)
  local pad = string.rep(" ", width - #name)
  if not color then return name .. pad .. " | " end
  local mark = stderr and "\27[31m!\27[0m " or "| "
  return string.format("\27[%dm%s\27[0m%s ", color, name, pad) .. mark
end

M._test = {
  duration = duration, exit_code_of = exit_code_of, parse_time = parse_time, epoch = epoch,
  log_time = log_time, time_key = time_key, is_live = is_live, pick_stack = pick_stack, current = current,
  identity = identity,
  engine_row = engine_row, stack_status = stack_status, state_text = state_text,
  failure_text = failure_text, row_cells = row_cells, table_lines = table_lines,
  indent_json = indent_json, loopback_port = loopback_port, endpoint = endpoint,
  destroy_target = destroy_target, owned = owned, log_prefix = log_prefix, COLUMNS = COLUMNS,
}

-- ---------------------------------------------------------------------------------------------
-- shared plumbing

local function color_ok(fd)
  local nc = os.getenv("NO_COLOR")
  return core.isatty(fd) and (nc == nil or nc == "")
end

local function connect(cli)
  local engine, err, code = docker.connect()
  if not engine then cli.say(docker.explain(err, code)) end
  return engine
end

-- Takes the one argument naming a stack file out of rest -> file | nil | false (two given).
local function take_file(rest)
  local file
  for i = #rest, 1, -1 do
    if rest[i]:match("%.lua$") then
      if file then return false end
      file = table.remove(rest, i)
    end
  end
  return file
end

-- Loads a stack file, printing its one-line error as `mw check` does -> stack | nil.
local function load_file(file)
  local s, err = require("mw.stack").load(file)
  if not s then io.stderr:write(tostring(err), "\n") end
  return s
end

-- The stack the options and arguments name -> { name, def } (either may be nil) | nil, code.
local function stack_arg(o, rest, cli, what)
  local file = take_file(rest)
  if file == false then cli.say(what .. ": give one stack file") return nil, USAGE end
  local def
  if file then
    def = load_file(file)
    if not def then return nil, USAGE end
    if o.stack and o.stack ~= def.name then
      cli.say(string.format("%s: %s is stack %s, but --stack says %s", what, file, def.name, o.stack))
      return nil, USAGE
    end
  end
  return { name = o.stack or (def and def.name), def = def }
end

-- mw's containers, of one stack or all, of one component or all -> list | nil, err.
local function containers(engine, stack, comp)
  -- mw.config-hash is set only by mw's own create: a container someone ran from an image mw
  -- built inherits the image's used-by and mw.stack labels, but not this one
  local labels = owner.filter(stack, "mw.config-hash", comp and ("mw.component=" .. comp) or nil)
  local list, err = engine:list { label = labels }
  if not list then return nil, err end
  local mine = {}
  for _, x in ipairs(list) do
    local l = x.Labels or {}
    if owner.owns(l) and l["mw.stack"] and (not stack or l["mw.stack"] == stack)
        and (not comp or l["mw.component"] == comp) then
      mine[#mine + 1] = x
    end
  end
  return mine
end

-- Finds what a name means: a component (all its instances) or one instance by its key
-- ("web-2") -> stack, containers, component, instance or nil | nil, message.
local function resolve(engine, name, stack)
  local list, err = containers(engine, stack, name)
  if not list then return nil, err end
  local comp, instance = name, nil
  if #list == 0 then
    local base, n = name:match("^(.+)%-(%d+)$")
    if base then
      local all, aerr = containers(engine, stack, base)
      if not all then return nil, aerr end
      for _, x in ipairs(all) do
        local _, idx = identity(x.Labels)
        if idx == tonumber(n) then list[#list + 1] = x end
      end
      if #list > 0 then comp, instance = base, math.tointeger(tonumber(n)) end
    end
  end
  local s, why = pick_stack(name, list, stack)
  if not s then return nil, why end
  return s, list, comp, instance
end

local function read_doc(dir, stack)
  local text = fs.read(dir .. "/" .. stack .. "/status.json")
  if not text then return nil end
  local doc = docker.decode(text)
  if type(doc) ~= "table" or doc.stack ~= stack then return nil end
  return doc
end

-- The running mw's status of a stack -> doc | nil (none, or a dead mw's), and the file's
-- content either way (a dead mw's still says where the stack file is).
local function live_status(dir, stack)
  -- a running mw answers on its socket; its status file is the fallback
  local api = require("mw.api").query(dir, stack, "/api/status")
  if type(api) == "table" and api.components then return api, api end
  local doc = read_doc(dir, stack)
  if is_live(doc, core.time(), pid_alive) then return doc, doc end
  return nil, doc
end

local function row_of(doc, comp)
  for _, c in ipairs(list_of(doc and doc.components)) do
    if type(c) == "table" and c.name == comp then return c end
  end
  return nil
end

local function write(s)
  local ok, err = io.stdout:write(s)
  if not ok then return nil, err end
  return true
end

-- ---------------------------------------------------------------------------------------------
-- mw status

function M.status(args, cli)
  local o, rest = cli.parse(args, { stack = "value", json = true, ["state-dir"] = "value" })
  if not o then cli.say(rest) return USAGE end
  local target, code = stack_arg(o, rest, cli, "status")
  if not target then return code end
  if #rest > 0 then cli.say("status: unexpected argument " .. rest[1]) return USAGE end
  local engine = connect(cli)
  if not engine then return FAILURE end
  local dir = owner.state_dir(o.state_dir or queue.default_dir())

  local all, err = containers(engine, target.name)
  if not all then cli.say(err) return FAILURE end
  -- the stacks to show: the one named, or every one with containers or a running mw
  local names, by = {}, {}
  local function add(s) if not by[s] then by[s] = {} names[#names + 1] = s end end
  if target.name then add(target.name) end
  for _, x in ipairs(all) do
    local s = x.Labels["mw.stack"]
    add(s)
    table.insert(by[s], x)
  end
  if not target.name then
    for _, s in ipairs(fs.list(dir) or {}) do
      -- ".": the queue's own files; "@": another installation's state (owner.state_dir)
      if not s:find("^[.@]") and live_status(dir, s) then add(s) end
    end
  end
  table.sort(names)

  -- start times and exit details are in each container's inspect: all at once, not in turn
  local infos, tasks = {}, {}
  for _, x in ipairs(all) do
    if x.Labels["mw.component"] and (x.State == "running" or x.State == "exited" or x.State == "dead") then
      tasks[#tasks + 1] = core.spawn(function() infos[x.Id] = engine:inspect(x.Id) end, "inspect")
    end
  end
  for _, task in ipairs(tasks) do core.join(task) end

  local now = core.time()
  local stacks = {}
  for _, s in ipairs(names) do
    local live = live_status(dir, s)
    stacks[#stacks + 1] = stack_status {
      stack = s, def = target.def, live = live, containers = by[s], infos = infos, now = now,
    }
  end
  if target.name and not target.def and #stacks[1].components == 0 and not stacks[1].live then
    cli.say("no stack " .. target.name .. ": no container of mw's and no mw running it")
    return FAILURE
  end

  if o.json then
    local out = docker.array()
    for i, st in ipairs(stacks) do
      local comps = docker.array()
      for j, r in ipairs(st.components) do comps[j] = docker.object(r) end
      st.components = comps
      out[i] = docker.object(st)
    end
    write(docker.encode(docker.object { stacks = out }) .. "\n")
    return OK
  end

  if #stacks == 0 then
    cli.say("no stacks: mw has no containers on this engine and no mw is running")
    return OK
  end
  local color = color_ok(1)
  local GOOD = { healthy = true, running = true }
  local BAD = { unhealthy = true, gave_up = true, exited = true, dead = true }
  local function paint(col, text, cells)
    if col ~= 2 then return text end
    local st = cells.row.state
    local c = GOOD[st] and 32 or BAD[st] and 31 or (st == "not_created" or st == "stopped") and 2 or 33
    return string.format("\27[%dm%s\27[0m", c, text)
  end
  local lines = {}
  for i, st in ipairs(stacks) do
    if i > 1 then lines[#lines + 1] = "" end
    if st.live then
      lines[#lines + 1] = string.format("stack %s: supervised by mw (pid %s) since %s", st.stack, tostring(st.pid),
        type(st.since) == "number" and os.date("%Y-%m-%d %H:%M:%S", math.floor(st.since)) or "?")
    else
      lines[#lines + 1] = string.format("stack %s: no mw running; state from the engine", st.stack)
    end
    local rows = {}
    for j, r in ipairs(st.components) do
      rows[j] = row_cells(r, now)
      rows[j].row = r
    end
    for _, l in ipairs(table_lines(COLUMNS, rows, color and paint or nil)) do lines[#lines + 1] = l end
  end
  write(table.concat(lines, "\n") .. "\n")
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- mw inspect

function M.inspect(args, cli)
  local o, rest = cli.parse(args, { stack = "value", ["state-dir"] = "value" })
  if not o then cli.say(rest) return USAGE end
  local target, code = stack_arg(o, rest, cli, "inspect")
  if not target then return code end
  local comp = rest[1]
  if not comp or #rest > 1 then cli.say("usage: mw inspect <component> [stack.lua | --stack S]") return USAGE end
  local engine = connect(cli)
  if not engine then return FAILURE end
  local stack, list, group = resolve(engine, comp, target.name)
  if not stack then cli.say(list) return FAILURE end
  -- of a scaled component, the first running instance (name one by its key: web-2)
  local x = current(list)
  local _, _, key = identity(x.Labels)
  if x.State ~= "running" then
    cli.say(string.format("component %s of stack %s is not running (%s)", comp, stack,
      state_text(engine_row(x, nil, 0))))
    return FAILURE
  end
  local info, ierr = engine:inspect(x.Id)
  if not info then cli.say(ierr) return FAILURE end

  local dir = owner.state_dir(o.state_dir or queue.default_dir())
  local live, doc = live_status(dir, stack)
  local def = target.def
  if not def and doc and type(doc.file) == "string" then
    -- the stack file the (running or last) mw used knows the heartbeat's path
    def = require("mw.stack").load(doc.file)
    if def and def.name ~= stack then def = nil end
  end
  def = def and def.components[group] or nil
  local ep, why = endpoint(comp, row_of(live, key), def, info)
  if not ep then cli.say(why) return FAILURE end

  -- only ever 127.0.0.1: the host reaches containers through their published ports
  local url = string.format("http://127.0.0.1:%d%s", ep.port, ep.path)
  local res, err = http.request { url = url, timeout = INSPECT_TIMEOUT, connect_timeout = INSPECT_TIMEOUT }
  if not res then
    cli.say(string.format("component %s: no answer from %s: %s", comp, url, tostring(err)))
    return FAILURE
  end
  local body = res.body or ""
  if res.status < 200 or res.status >= 300 then
    -- as the original inspect did, the component's own answer is printed: it is often the
    -- explanation (a 404 page, a 500's error); the status line goes to stderr, and exit 1
    if body ~= "" then write(body:sub(-1) == "\n" and body or (body .. "\n")) end
    io.stdout:flush()
    local line = tostring(res.status_line or ""):gsub("%c", " ")
    if not line:find("^HTTP/") then line = "HTTP " .. res.status end
    cli.say(string.format("component %s: %s answered %s", comp, url, line))
    return FAILURE
  end
  if core.isatty(1) and docker.decode(body) ~= nil then
    write(indent_json(body))
  else
    write(body)
  end
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- mw kill

function M.kill(args, cli)
  local o, rest = cli.parse(args, { stack = "value" })
  if not o then cli.say(rest) return USAGE end
  local target, code = stack_arg(o, rest, cli, "kill")
  if not target then return code end
  local comp = rest[1]
  if not comp or #rest > 1 then cli.say("usage: mw kill <component> [stack.lua | --stack S]") return USAGE end
  local engine = connect(cli)
  if not engine then return FAILURE end
  local stack, list = resolve(engine, comp, target.name)
  if not stack then
    if target.def and target.def.components[comp] then
      cli.say(string.format("component %s of stack %s has no container", comp, target.def.name))
    else
      cli.say(list)
    end
    return FAILURE
  end
  local rc = OK
  for _, x in ipairs(list) do
    local ok, err = engine:remove(x.Id, { force = true })
    if not ok then
      cli.say(string.format("cannot remove %s: %s", x.Id:sub(1, 12), tostring(err)))
      rc = FAILURE
    end
  end
  return rc
end

-- ---------------------------------------------------------------------------------------------
-- mw destroy

local function name_of(x)
  local n = x.Names and x.Names[1]
  return n and n:gsub("^/", "") or x.Id:sub(1, 12)
end

function M.destroy(args, cli)
  local o, rest = cli.parse(args, { stack = "value", all = true, volumes = true, ["state-dir"] = "value" })
  if not o then cli.say(rest) return USAGE end
  local file = take_file(rest)
  if file == false then cli.say("destroy: give one stack file") return USAGE end
  if #rest > 0 then cli.say("destroy: unexpected argument " .. rest[1]) return USAGE end
  if not file and not o.stack and not o.all then file = "stack.lua" end
  local file_stack
  if file then
    local def = load_file(file)
    if not def then return USAGE end
    file_stack = def.name
  end
  local target, terr = destroy_target(o, file_stack)
  if not target then cli.say("destroy: " .. terr) return USAGE end
  local engine = connect(cli)
  if not engine then return FAILURE end

  if target.stack then
    local live = live_status(owner.state_dir(o.state_dir or queue.default_dir()), target.stack)
    if live then
      cli.say(string.format("warning: mw (pid %s) is running stack %s and will recreate what is removed; stop it first",
        tostring(live.pid), target.stack))
    end
  end
  local filter = { label = owner.filter(target.stack) }
  local rc = OK
  local function fail(what, name, err)
    cli.say(string.format("cannot remove %s %s: %s", what, name, tostring(err)))
    rc = FAILURE
  end
  local function listed(list, err, what)
    if not list then cli.say("cannot list " .. what .. ": " .. tostring(err)) rc = FAILURE return {} end
    return list
  end

  -- containers first (they hold the network and the images), then networks, then images
  local ctrs, cerr = engine:list { label = owner.filter(target.stack, "mw.config-hash") }
  for _, x in ipairs(listed(ctrs, cerr, "containers")) do
    if owned(x.Labels, target) then
      local ok, err = engine:remove(x.Id, { force = true, volumes = o.volumes })
      if not ok then fail("container", name_of(x), err)
      elseif err ~= "gone" then write("removed container " .. name_of(x) .. "\n") end
    end
  end
  local nets, nerr = engine:network_list(filter)
  for _, n in ipairs(listed(nets, nerr, "networks")) do
    if owned(n.Labels, target) then
      local ok, err = engine:network_remove(n.Id)
      if not ok then fail("network", n.Name, err)
      elseif err ~= "gone" then write("removed network " .. tostring(n.Name) .. "\n") end
    end
  end
  local imgs, ierr = engine:image_list(filter)
  for _, img in ipairs(listed(imgs, ierr, "images")) do
    if owned(img.Labels, target) then
      -- by tag, so an image with several tags goes without force; by id when it has none
      local tags = {}
      for _, t in ipairs(img.RepoTags or {}) do if t ~= "<none>:<none>" then tags[#tags + 1] = t end end
      if #tags == 0 then tags[1] = img.Id end
      for _, t in ipairs(tags) do
        local ok, err, code = engine:image_remove(t)
        if not ok and code == "conflict" then
          -- a container mw does not own runs from it: the image stays, and destroy says why
          write("kept image " .. t .. " (a container mw did not create uses it)\n")
        elseif not ok then fail("image", t, err)
        elseif err ~= "gone" then write("removed image " .. t .. "\n") end
      end
    end
  end
  local vols, verr = engine:volume_list(filter)
  local kept = 0
  for _, v in ipairs(listed(vols, verr, "volumes")) do
    if owned(v.Labels, target) then
      if o.volumes then
        local ok, err = engine:volume_remove(v.Name)
        if not ok then fail("volume", v.Name, err)
        elseif err ~= "gone" then write("removed volume " .. v.Name .. "\n") end
      else
        kept = kept + 1
      end
    end
  end
  if kept > 0 then
    cli.say(string.format("kept %d volume%s (use --volumes to remove %s)", kept, kept == 1 and "" or "s",
      kept == 1 and "it" or "them"))
  end
  io.stdout:flush()
  return rc
end

-- ---------------------------------------------------------------------------------------------
-- mw logs

-- Reads one container's logs to their end (or, following, until it stops), printing each
-- line newer than seen.last -> true | nil, err.
local function read_logs(engine, id, opts, seen, emit)
  local r, err, code = engine:logs(id, {
    follow = opts.follow, tail = opts.tail, since = opts.since, timestamps = true,
  })
  if not r then return nil, err, code end
  while true do
    local stream, text, ts = r:next()
    if not stream then
      r:close()
      if text == "eof" or text == "closed" then return true end
      return nil, text
    end
    local key = ts and log_time(ts)
    if not key or not seen.last or key > seen.last then
      if key then seen.last = key seen.since = select(2, log_time(ts)) end
      if not emit(stream, text, ts) then r:close() return true end
    end
  end
end

-- The containers of one instance (t.stack, t.component, t.instance) -> list.
local function instance_containers(engine, t)
  local out = {}
  for _, x in ipairs(containers(engine, t.stack, t.component) or {}) do
    local _, idx = identity(x.Labels)
    if idx == t.instance then out[#out + 1] = x end
  end
  return out
end

-- Follows one component instance across its restarts: a container restarted in place is read again
-- from the last line seen; a new container (recreated) is read from its start. Start events
-- (label-filtered) say when to look; a list after every (re)connection catches what the
-- events missed.
local function follow(engine, t, opts, emit, say)
  local seen = {}            -- container id -> { last = key, since = since }
  local ev
  local function open_events()
    local e, err = engine:events {
      filters = { type = "container", event = "start",
                  label = owner.filter(t.stack, "mw.component=" .. t.component) },
      since = string.format("%.3f", core.time() - 1),
    }
    ev = e
    return e, err
  end
  local function read(id, tail)
    local s = seen[id]
    if not s then s = {} seen[id] = s end
    local ok, err, code = read_logs(engine, id, { follow = true, tail = tail, since = s.since }, s, emit)
    -- a container removed before its turn came is no news: its successor's start is
    if not ok and code ~= "notfound" then
      say(string.format("logs of %s: %s", t.name, tostring(err)))
    end
  end
  -- the list after (re)connecting: the current container once with the tail, then any
  -- container not read yet, or running again after its stream ended
  local function catch_up(first)
    local list = instance_containers(engine, t)
    if first then
      local cur = current(list)
      -- what the others printed before now is history, as with the tail of the current one
      local key, since = time_key(core.time())
      for _, x in ipairs(list) do if x ~= cur then seen[x.Id] = { last = key, since = since } end end
      if cur then read(cur.Id, opts.tail) end
      return
    end
    table.sort(list, function(a, b) return (a.Created or 0) < (b.Created or 0) end)
    for _, x in ipairs(list) do
      if not seen[x.Id] or x.State == "running" then read(x.Id) end
    end
  end
  local first = true
  while true do
    if not ev then
      local ok = open_events()
      if not ok then core.sleep(EVENTS_RETRY) end
    end
    if ev then
      catch_up(first)
      first = false
      while true do
        local e = ev:next()
        if not e then break end
        local actor = e.Actor or {}
        local _, idx = identity(actor.Attributes)
        local id = actor.ID or e.id
        if id and idx == t.instance then read(id) end
      end
      ev:close()
      ev = nil
    end
  end
end

function M.logs(args, cli)
  local o, rest = cli.parse(args, {
    f = "follow", follow = true, tail = "value", stack = "value", t = "timestamps", timestamps = true,
  })
  if not o then cli.say(rest) return USAGE end
  if o.tail and o.tail ~= "all" and not (math.tointeger(tonumber(o.tail)) and tonumber(o.tail) >= 0) then
    cli.say("logs: --tail wants a number of lines or all") return USAGE
  end
  local target, code = stack_arg(o, rest, cli, "logs")
  if not target then return code end
  local engine = connect(cli)
  if not engine then return FAILURE end

  -- what to show: one target per instance (key "web", "web-2"), each with its stack
  local targets, by_key = {}, {}
  local function add(stack, comp, idx)
    local key = idx > 1 and (comp .. "-" .. idx) or comp
    if by_key[stack .. "\0" .. key] then return end
    local tg = { name = key, component = comp, instance = idx, stack = stack }
    by_key[stack .. "\0" .. key] = tg
    targets[#targets + 1] = tg
  end
  local function add_def(stack, comp)
    local d = target.def and target.def.name == stack and target.def.components[comp]
    for i = 1, d and d.scale or 0 do add(stack, comp, i) end
  end
  if #rest == 0 then
    local list, err = containers(engine, target.name)
    if not list then cli.say(err) return FAILURE end
    local stack = target.name
    if not stack then
      local set, stacks = {}, {}
      for _, x in ipairs(list) do
        local s = x.Labels["mw.stack"]
        if not set[s] then set[s] = true stacks[#stacks + 1] = s end
      end
      table.sort(stacks)
      if #stacks == 0 then cli.say("no stacks: mw has no containers on this engine") return FAILURE end
      if #stacks > 1 then
        cli.say("containers of stacks " .. table.concat(stacks, ", ") .. ": say which with --stack") return FAILURE
      end
      stack = stacks[1]
    end
    for _, n in ipairs(target.def and target.def.order or {}) do add_def(stack, n) end
    for _, x in ipairs(list) do
      local comp, idx = identity(x.Labels)
      if comp then add(stack, comp, idx) end
    end
    if #targets == 0 then cli.say("no stack " .. stack .. ": no container of mw's") return FAILURE end
  else
    for _, n in ipairs(rest) do
      local stack, list, comp, instance = resolve(engine, n, target.name)
      if stack then
        if instance then
          add(stack, comp, instance)
        else
          add_def(stack, comp)
          for _, x in ipairs(list) do
            local c, idx = identity(x.Labels)
            add(stack, c, idx)
          end
        end
      elseif target.def and target.def.components[n] then
        add_def(target.def.name, n)
      else
        cli.say(list) return FAILURE
      end
    end
  end
  -- the stack file's order when there is one, else by name; instances in order
  local rank = {}
  for i, n in ipairs(target.def and target.def.order or {}) do rank[n] = i end
  table.sort(targets, function(a, b)
    local ra, rb = rank[a.component] or math.maxinteger, rank[b.component] or math.maxinteger
    if ra ~= rb then return ra < rb end
    if a.component ~= b.component then return a.component < b.component end
    return a.instance < b.instance
  end)

  local width = 0
  for _, t in ipairs(targets) do width = math.max(width, #t.name) end
  local color = color_ok(1)
  local broken = false         -- stdout went away (a closed pipe): stop quietly
  local done = core.cond()
  for i, t in ipairs(targets) do
    local pre = log_prefix(t.name, width, color and COLORS[(i - 1) % #COLORS + 1], false)
    local pre_err = color and log_prefix(t.name, width, COLORS[(i - 1) % #COLORS + 1], true) or pre
    t.emit = function(stream, text, ts)
      if broken then return false end
      local stamp = o.timestamps and ts and (ts .. " ") or ""
      local line = (stream == "stderr" and pre_err or pre) .. stamp .. text .. "\n"
      local ok = io.stdout:write(line)
      if ok and o.follow then ok = io.stdout:flush() end
      if not ok then broken = true done:notify() return false end
      return true
    end
  end

  local running = #targets
  local failed = false
  for _, t in ipairs(targets) do
    t.task = core.spawn(function()
      if o.follow then
        follow(engine, t, { tail = o.tail }, t.emit, cli.say)
      else
        local x = current(instance_containers(engine, t))
        if x then
          local ok, err = read_logs(engine, x.Id, { tail = o.tail }, {}, t.emit)
          if not ok then cli.say(string.format("logs of %s: %s", t.name, tostring(err))) failed = true end
        end
      end
      running = running - 1
      done:notify()
    end, "logs " .. t.name)
  end

  local sigs, sig_task
  if o.follow then
    -- -f ends on SIGINT or SIGTERM, like docker logs -f
    local signal = require "mw.signal"
    sigs = signal.watch { "INT", "TERM" }
    sig_task = core.spawn(function()
      if sigs:wait() then broken = true done:notify() end
    end, "logs signals")
  end
  while running > 0 and not broken do done:wait() end
  for _, t in ipairs(targets) do
    if t.task:status() ~= "done" and t.task:status() ~= "failed" and t.task:status() ~= "cancelled" then
      core.cancel(t.task)
    end
  end
  if sig_task and sig_task:status() ~= "done" then core.cancel(sig_task) end
  if sigs then sigs:close() end
  io.stdout:flush()
  return failed and FAILURE or OK
end

return M
