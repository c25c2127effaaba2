-- `mw logs`: the logs of a stack's component instances, each line prefixed by its instance;
-- with -f, follows every instance across restarts and recreations until SIGINT or SIGTERM.
local core = require "mw.core"
local owner = require "mw.owner"
local lookup = require "mw.lookup"
local timestamp = require "mw.timestamp"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2
local EVENTS_RETRY = 1                    -- logs -f: pause before reconnecting to /events
local COLORS = { 36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94 }

-- The prefix of a log line: the component padded to the longest name.
function M.prefix(name, width, color, stderr)
  local pad = string.rep(" ", width - #name)
  if not color then return name .. pad .. " | " end
  local mark = stderr and "\27[31m!\27[0m " or "| "
  return string.format("\27[%dm%s\27[0m%s ", color, name, pad) .. mark
end

-- Reads one container's logs to their end (or, following, until it stops), printing each
-- line newer than seen.last -> true | nil, err.
local function read_logs(engine, id, opts, seen, emit)
  local reader, err, code = engine:logs(id, {
    follow = opts.follow, tail = opts.tail, since = opts.since, timestamps = true,
  })
  if not reader then return nil, err, code end
  while true do
    local stream, text, ts = reader:next()
    if not stream then
      reader:close()
      if text == "eof" or text == "closed" then return true end
      return nil, text
    end
    local key = ts and timestamp.log_key(ts)
    if not key or not seen.last or key > seen.last then
      if key then seen.last = key seen.since = select(2, timestamp.log_key(ts)) end
      if not emit(stream, text, ts) then reader:close() return true end
    end
  end
end

-- The containers of one instance (shown.stack, shown.component, shown.instance) -> list.
local function instance_containers(engine, shown)
  local out = {}
  for _, ctr in ipairs(lookup.containers(engine, shown.stack, shown.component) or {}) do
    local _, instance = lookup.identity(ctr.Labels)
    if instance == shown.instance then out[#out + 1] = ctr end
  end
  return out
end

-- Follows one component instance across its restarts: a container restarted in place is read again
-- from the last line seen; a new container (recreated) is read from its start. Start events
-- (label-filtered) say when to look; a list after every (re)connection catches what the
-- events missed.
local function follow(engine, shown, opts, emit, say)
  local seen = {}            -- container id -> { last = key, since = since }
  local events
  local function open_events()
    local stream, err = engine:events {
      filters = { type = "container", event = "start",
                  label = owner.filter(shown.stack, "mw.component=" .. shown.component) },
      since = string.format("%.3f", core.time() - 1),
    }
    events = stream
    return stream, err
  end
  local function read(id, tail)
    local mark = seen[id]
    if not mark then mark = {} seen[id] = mark end
    local ok, err, code = read_logs(engine, id, { follow = true, tail = tail, since = mark.since }, mark, emit)
    -- a container removed before its turn came is no news: its successor's start is
    if not ok and code ~= "notfound" then
      say(string.format("logs of %s: %s", shown.name, tostring(err)))
    end
  end
  -- the list after (re)connecting: the current container once with the tail, then any
  -- container not read yet, or running again after its stream ended
  local function catch_up(first)
    local list = instance_containers(engine, shown)
    if first then
      local cur = lookup.current(list)
      -- what the others printed before now is history, as with the tail of the current one
      local key, since = timestamp.key_of(core.time())
      for _, ctr in ipairs(list) do if ctr ~= cur then seen[ctr.Id] = { last = key, since = since } end end
      if cur then read(cur.Id, opts.tail) end
      return
    end
    table.sort(list, function(a, b) return (a.Created or 0) < (b.Created or 0) end)
    for _, ctr in ipairs(list) do
      if not seen[ctr.Id] or ctr.State == "running" then read(ctr.Id) end
    end
  end
  local first = true
  while true do
    if not events then
      local ok = open_events()
      if not ok then core.sleep(EVENTS_RETRY) end
    end
    if events then
      catch_up(first)
      first = false
      while true do
        local event = events:next()
        if not event then break end
        local actor = event.Actor or {}
        local _, instance = lookup.identity(actor.Attributes)
        local id = actor.ID or event.id
        if id and instance == shown.instance then read(id) end
      end
      events:close()
      events = nil
    end
  end
end

-- What to show: one entry per instance (name "web", "web-2", component, instance, stack), in
-- the stack file's order when there is one, else by name; instances in order -> list | nil,
-- message.
local function instances(engine, target, names)
  local shown, by_key = {}, {}
  local function add(stack, comp, instance)
    local key = instance > 1 and (comp .. "-" .. instance) or comp
    if by_key[stack .. "\0" .. key] then return end
    local entry = { name = key, component = comp, instance = instance, stack = stack }
    by_key[stack .. "\0" .. key] = entry
    shown[#shown + 1] = entry
  end
  local function add_def(stack, comp)
    local def = target.def and target.def.name == stack and target.def.components[comp]
    for i = 1, def and def.scale or 0 do add(stack, comp, i) end
  end
  if #names == 0 then
    local list, err = lookup.containers(engine, target.name)
    if not list then return nil, err end
    local stack = target.name
    if not stack then
      local set, stacks = {}, {}
      for _, ctr in ipairs(list) do
        local name = ctr.Labels["mw.stack"]
        if not set[name] then set[name] = true stacks[#stacks + 1] = name end
      end
      table.sort(stacks)
      if #stacks == 0 then return nil, "no stacks: mw has no containers on this engine" end
      if #stacks > 1 then
        return nil, "containers of stacks " .. table.concat(stacks, ", ") .. ": say which with --stack"
      end
      stack = stacks[1]
    end
    for _, name in ipairs(target.def and target.def.order or {}) do add_def(stack, name) end
    for _, ctr in ipairs(list) do
      local comp, instance = lookup.identity(ctr.Labels)
      if comp then add(stack, comp, instance) end
    end
    if #shown == 0 then return nil, "no stack " .. stack .. ": no container of mw's" end
  else
    for _, name in ipairs(names) do
      local stack, list, comp, instance = lookup.resolve(engine, name, target.name)
      if stack then
        if instance then
          add(stack, comp, instance)
        else
          add_def(stack, comp)
          for _, ctr in ipairs(list) do
            local ctr_comp, ctr_instance = lookup.identity(ctr.Labels)
            add(stack, ctr_comp, ctr_instance)
          end
        end
      elseif target.def and target.def.components[name] then
        add_def(target.def.name, name)
      else
        return nil, list
      end
    end
  end
  local rank = {}
  for i, name in ipairs(target.def and target.def.order or {}) do rank[name] = i end
  table.sort(shown, function(a, b)
    local rank_a, rank_b = rank[a.component] or math.maxinteger, rank[b.component] or math.maxinteger
    if rank_a ~= rank_b then return rank_a < rank_b end
    if a.component ~= b.component then return a.component < b.component end
    return a.instance < b.instance
  end)
  return shown
end

function M.main(args, cli)
  local opts, rest = cli.parse(args, {
    f = "follow", follow = true, tail = "value", stack = "value", t = "timestamps", timestamps = true,
  })
  if not opts then cli.say(rest) return USAGE end
  if opts.tail and opts.tail ~= "all" and not (math.tointeger(tonumber(opts.tail)) and tonumber(opts.tail) >= 0) then
    cli.say("logs: --tail wants a number of lines or all") return USAGE
  end
  local target, code = lookup.stack_arg(opts, rest, cli.say, "logs")
  if not target then return code end
  local engine = lookup.connect(cli.say)
  if not engine then return FAILURE end
  local shown, err = instances(engine, target, rest)
  if not shown then cli.say(err) return FAILURE end

  local width = 0
  for _, entry in ipairs(shown) do width = math.max(width, #entry.name) end
  local color = lookup.color_ok(1)
  local broken = false         -- stdout went away (a closed pipe): stop quietly
  local done = core.cond()
  for i, entry in ipairs(shown) do
    local pre = M.prefix(entry.name, width, color and COLORS[(i - 1) % #COLORS + 1], false)
    local pre_err = color and M.prefix(entry.name, width, COLORS[(i - 1) % #COLORS + 1], true) or pre
    entry.emit = function(stream, text, ts)
      if broken then return false end
      local stamp = opts.timestamps and ts and (ts .. " ") or ""
      local line = (stream == "stderr" and pre_err or pre) .. stamp .. text .. "\n"
      local ok = io.stdout:write(line)
      if ok and opts.follow then ok = io.stdout:flush() end
      if not ok then broken = true done:notify() return false end
      return true
    end
  end

  local running = #shown
  local failed = false
  for _, entry in ipairs(shown) do
    entry.task = core.spawn(function()
      if opts.follow then
        follow(engine, entry, { tail = opts.tail }, entry.emit, cli.say)
      else
        local ctr = lookup.current(instance_containers(engine, entry))
        if ctr then
          local ok, rerr = read_logs(engine, ctr.Id, { tail = opts.tail }, {}, entry.emit)
          if not ok then cli.say(string.format("logs of %s: %s", entry.name, tostring(rerr))) failed = true end
        end
      end
      running = running - 1
      done:notify()
    end, "logs " .. entry.name)
  end

  local sigs, sig_task
  if opts.follow then
    -- -f ends on SIGINT or SIGTERM, like docker logs -f
    local signal = require "mw.signal"
    sigs = signal.watch { "INT", "TERM" }
    sig_task = core.spawn(function()
      if sigs:wait() then broken = true done:notify() end
    end, "logs signals")
  end
  while running > 0 and not broken do done:wait() end
  for _, entry in ipairs(shown) do
    local state = entry.task:status()
    if state ~= "done" and state ~= "failed" and state ~= "cancelled" then core.cancel(entry.task) end
  end
  if sig_task and sig_task:status() ~= "done" then core.cancel(sig_task) end
  if sigs then sigs:close() end
  io.stdout:flush()
  return failed and FAILURE or OK
end

return M
