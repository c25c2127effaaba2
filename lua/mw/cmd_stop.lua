-- `mw stop`, `mw start`, `mw restart` and `mw down`: with an mw running the stack they ask it
-- (the API), so it knows the stop is the user's and does not recover it; without one they act
-- on the engine, in the same order: dependents stop before what they depend on (in parallel
-- where the graph allows), each with its stop_grace; starts go in dependency order.
local core = require "mw.core"
local fs = require "mw.fs"
local cjson = require "cjson"
local api = require "mw.api"
local owner = require "mw.owner"
local lookup = require "mw.lookup"
local destroy = require "mw.cmd_destroy"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2
local START_WAIT = 120         -- seconds a start without mw waits for a dependency to run
local LEAVE_WAIT = 30          -- seconds `down` waits for the running mw to exit

-- ---------------------------------------------------------------------------------------------
-- the mark an engine-side stop leaves: <state dir>/<stack>/stopped.json, { components = [...] }.
-- `mw status` shows those components "stopped (by user)"; `mw start` clears them, and so does
-- `mw run`, which brings the whole stack up (as compose's `up` starts what `stop` stopped).

function M.marks_file(dir, stack) return dir .. "/" .. stack .. "/stopped.json" end

function M.read_marks(dir, stack)
  local text = fs.read(M.marks_file(dir, stack))
  local ok, doc = pcall(cjson.decode, text or "")
  local set = {}
  if ok and type(doc) == "table" and type(doc.components) == "table" then
    for _, name in ipairs(doc.components) do if type(name) == "string" then set[name] = true end end
  end
  return set
end

local function write_marks(dir, stack, set)
  local list = {}
  for name in pairs(set) do list[#list + 1] = name end
  table.sort(list)
  if #list == 0 then fs.remove(M.marks_file(dir, stack)) return end
  fs.mkdirp(dir .. "/" .. stack, 448)
  fs.write_atomic(M.marks_file(dir, stack), cjson.encode { components = list }, 384)
end

function M.clear_marks(dir, stack) fs.remove(M.marks_file(dir, stack)) end

-- ---------------------------------------------------------------------------------------------
-- the dependency graph, from the stack file (given, or the one the last mw ran) or a live mw

-- deps[name] = { dep = true } for every component known, or nil when nothing tells.
local function graph_of(def, live)
  local deps = {}
  if def then
    for name, comp in pairs(def.components) do
      deps[name] = {}
      for dep in pairs(comp.depends_on or {}) do deps[name][dep] = true end
    end
    return deps
  end
  if live then
    for _, row in ipairs(lookup.list_of(live.components)) do
      if type(row) == "table" and type(row.component or row.name) == "string" then
        local name = row.component or row.name
        deps[name] = deps[name] or {}
        for dep in pairs(type(row.depends_on) == "table" and row.depends_on or {}) do deps[name][dep] = true end
      end
    end
    return deps
  end
  return nil
end

-- Whether a depends on b, directly or not.
local function depends(deps, a, b, seen)
  seen = seen or {}
  if seen[a] or not deps or not deps[a] then return false end
  seen[a] = true
  for dep in pairs(deps[a]) do
    if dep == b or depends(deps, dep, b, seen) then return true end
  end
  return false
end

-- Runs fn(name) for every name, each after those `before(name, other)` says go first; in parallel
-- otherwise. -> whether every fn returned true
local function in_order(names, before, fn)
  local done, all_ok = {}, true
  -- a cond lets one task wait: one each, all nudged when any finishes
  local conds, tasks = {}, {}
  for _, name in ipairs(names) do conds[name] = core.cond() end
  for _, name in ipairs(names) do
    tasks[#tasks + 1] = core.spawn(function()
      while true do
        local ready = true
        for _, other in ipairs(names) do
          if other ~= name and before(name, other) and not done[other] then ready = false break end
        end
        if ready then break end
        conds[name]:wait(1)
      end
      if not fn(name) then all_ok = false end
      done[name] = true
      for _, c in pairs(conds) do c:notify() end
    end, "order-" .. name)
  end
  for _, t in ipairs(tasks) do core.join(t) end
  for _, c in pairs(conds) do c:close() end
  return all_ok
end

-- ---------------------------------------------------------------------------------------------
-- on the engine (no mw running)

local name_of = lookup.name_of

-- The seconds a container's stop waits before SIGKILL: its component's stop_grace, else what the
-- container was created with (mw sets StopTimeout from stop_grace), else the engine's 10.
local function grace_of(engine, ctr, def)
  local comp = def and def.components[(ctr.Labels or {})["mw.component"]]
  if comp then return math.ceil(comp.stop_grace or 10) end
  local info = engine:inspect(ctr.Id)
  local t = info and info.Config and info.Config.StopTimeout
  return math.tointeger(t) or 10
end

-- The states in which a container has a process to stop.
local UP = { running = true, paused = true, restarting = true }

-- Stops the containers all at once, each with grace(ctr) seconds, and says "stopped <what><name>"
-- of each -> false when one could not be stopped.
local function stop_each(ctx, ctrs, what, grace)
  local ok, tasks = true, {}
  for _, ctr in ipairs(ctrs) do
    tasks[#tasks + 1] = core.spawn(function()
      local sok, err = ctx.engine:stop(ctr.Id, grace(ctr))
      if not sok then ctx.say(string.format("cannot stop %s%s: %s", what, name_of(ctr), tostring(err))) ok = false
      else lookup.write("stopped " .. what .. name_of(ctr) .. "\n") end
    end, "stop " .. name_of(ctr))
  end
  for _, t in ipairs(tasks) do core.join(t) end
  return ok
end

local function stop_engine(ctx, names)
  return in_order(names, function(name, other) return depends(ctx.deps, other, name) end, function(name)
    local up = {}
    for _, ctr in ipairs(ctx.by[name] or {}) do
      if UP[ctr.State] then up[#up + 1] = ctr end
    end
    return stop_each(ctx, up, "", function(ctr) return grace_of(ctx.engine, ctr, ctx.def) end)
  end)
end

-- The network holders (mw.holder) the named components' containers joined, once no running
-- container joins them (a "service:x" sharer may): stopped too, so their published ports are
-- released as compose's stop releases a container's. start_engine starts them again first.
-- -> false when one could not be stopped
local function stop_holders(ctx, names)
  local engine = ctx.engine
  local want = {}
  for _, name in ipairs(names) do
    for _, ctr in ipairs(ctx.by[name] or {}) do
      local id = lookup.joined(ctr)
      if id then want[id] = true end
    end
  end
  if next(want) == nil then return true end
  for _, ctr in ipairs(lookup.containers(engine, ctx.stack) or {}) do
    local id = lookup.joined(ctr)
    if id and UP[ctr.State] then want[id] = nil end
  end
  local stop = {}
  for _, holder in ipairs(lookup.holders(engine, ctx.stack) or {}) do
    if want[holder.Id] and holder.State == "running" then stop[#stop + 1] = holder end
  end
  return stop_each(ctx, stop, "network holder ", function() return 1 end)
end

-- Waits until the component's containers run -> true | nil, why.
local function wait_running(engine, list)
  local deadline = core.now() + START_WAIT
  for _, ctr in ipairs(list) do
    while true do
      local info = engine:inspect(ctr.Id)
      local status = info and info.State and info.State.Status
      if status == "running" then break end
      if status ~= "created" and status ~= "restarting" or core.now() > deadline then
        return nil, string.format("%s is %s", name_of(ctr), tostring(status or "gone"))
      end
      core.sleep(0.05)
    end
  end
  return true
end

local function start_engine(ctx, names)
  local say, engine = ctx.say, ctx.engine
  local failed = {}
  return in_order(names, function(name, other) return depends(ctx.deps, name, other) end, function(name)
    for dep in pairs(ctx.deps and ctx.deps[name] or {}) do
      if failed[dep] then
        say(string.format("not starting %s: its dependency %s did not start", name, dep))
        failed[name] = true
        return false
      end
    end
    local list = ctx.by[name] or {}
    if #list == 0 then
      say(string.format("component %s of stack %s has no container: mw run creates it", name, ctx.stack))
      failed[name] = true
      return false
    end
    local ok, tasks = true, {}
    for _, ctr in ipairs(list) do
      if ctr.State ~= "running" then
        tasks[#tasks + 1] = core.spawn(function()
          local sok, err
          -- a held container joins its network holder (mw.holder), which must run first (after
          -- a reboot of the host, say): started here, as mw run would
          local holder = ctr.State ~= "paused" and lookup.holder_of(ctx.engine, ctr, ctx.stack)
          if holder and (holder.State or {}).Status ~= "running" then ctx.engine:start(holder.Id) end
          if ctr.State == "paused" then sok, err = ctx.engine:unpause(ctr.Id) else sok, err = ctx.engine:start(ctr.Id) end
          if not sok then say(string.format("cannot start %s: %s", name_of(ctr), tostring(err))) ok = false
          else lookup.write("started " .. name_of(ctr) .. "\n") end
        end, "start " .. name_of(ctr))
      end
    end
    for _, t in ipairs(tasks) do core.join(t) end
    if ok then
      -- a dependent starts once this one runs (no heartbeat without mw: running is up)
      local rok, why = wait_running(engine, list)
      if not rok then say(string.format("component %s did not stay up: %s", name, why)) ok = false end
    end
    if not ok then failed[name] = true end
    return ok
  end)
end

-- The named components and what they depend on that is not running, in the graph's terms.
local function with_stopped_deps(ctx, names)
  local set, out = {}, {}
  for _, name in ipairs(names) do set[name] = true end
  local changed = true
  while changed do
    changed = false
    for name in pairs(set) do
      for dep in pairs(ctx.deps and ctx.deps[name] or {}) do
        if not set[dep] then
          local running = false
          for _, ctr in ipairs(ctx.by[dep] or {}) do if ctr.State == "running" then running = true end end
          if not running then set[dep] = true changed = true end
        end
      end
    end
  end
  for name in pairs(set) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- ---------------------------------------------------------------------------------------------
-- through the running mw

-- Asks the running mw; prints each instance's state -> exit status.
local function ask(ctx, op, names)
  local query = "/api/" .. op
  if #names > 0 then query = query .. "?components=" .. table.concat(names, ",") end
  -- the mw answers once it is done: a stop takes up to the graces of a chain, a start its starts
  -- (the mw waits up to 120 s for them to settle)
  local timeout = 180
  for _, comp in pairs(ctx.def and ctx.def.components or {}) do timeout = timeout + (comp.stop_grace or 10) end
  local v, err = api.query(ctx.dir, ctx.stack, query, { method = "POST", timeout = timeout })
  if not v then ctx.say(op .. ": " .. tostring(err)) return FAILURE end
  local rc = OK
  for _, row in ipairs(lookup.list_of(v.components)) do
    if type(row) == "table" then
      lookup.write(string.format("%s %s\n", tostring(row.name), (tostring(row.state):gsub("_", " "))))
      local s = row.state
      if op ~= "stop" and (s == "backoff" or s == "gave_up" or s == "waiting" or s == "restarting") then rc = FAILURE end
    end
  end
  return rc
end

-- ---------------------------------------------------------------------------------------------
-- the commands

local USAGE_LINE = {
  stop = "usage: mw stop [component...] [stack.lua | --stack S]",
  start = "usage: mw start [component...] [stack.lua | --stack S]",
  restart = "usage: mw restart [component...] [stack.lua | --stack S]",
  down = "usage: mw down [--volumes] [stack.lua | --stack S]",
}

-- What every one of these commands finds first -> ctx | nil, exit status (after saying why).
function M.prepare(op, args, cli)
  local spec = { stack = "value", ["state-dir"] = "value" }
  if op == "down" then spec.volumes = true end
  local opts, rest = cli.parse(args, spec)
  if not opts then cli.say(rest) return nil, USAGE end
  -- with neither a stack file nor --stack, ./stack.lua (as run, check and destroy)
  local has_file = false
  for _, a in ipairs(rest) do if a:match("%.lua$") then has_file = true end end
  if not has_file and not opts.stack then rest[#rest + 1] = "stack.lua" end
  local target, code = lookup.stack_arg(opts, rest, cli.say, op)
  if not target then return nil, code end
  if op == "down" and #rest > 0 then cli.say(USAGE_LINE.down) return nil, USAGE end
  for _, name in ipairs(rest) do
    if name:sub(1, 1) == "-" or name == "" then cli.say(USAGE_LINE[op]) return nil, USAGE end
  end
  local ctx = { op = op, say = cli.say, opts = opts, names = rest, stack = target.name, def = target.def,
                dir = lookup.state_dir(opts) }
  ctx.engine = lookup.connect(cli.say)
  if not ctx.engine then return nil, FAILURE end
  local live = api.query(ctx.dir, ctx.stack, "/api/status")
  if type(live) == "table" and live.components then ctx.live = live end
  if not ctx.def then
    -- the stack file the running (or last) mw used knows the graph and the graces
    local _, doc = lookup.live_status(ctx.dir, ctx.stack)
    local file = (ctx.live and ctx.live.file) or (doc and doc.file)
    if type(file) == "string" then
      local def = require("mw.stack").load(file)
      if def and def.name == ctx.stack then ctx.def = def end
    end
  end
  local list, err = lookup.containers(ctx.engine, ctx.stack)
  if not list then cli.say(err) return nil, FAILURE end
  ctx.by = {}
  for _, ctr in ipairs(list) do
    local comp = ctr.Labels["mw.component"]
    if comp then
      ctx.by[comp] = ctx.by[comp] or {}
      table.insert(ctx.by[comp], ctr)
    end
  end
  ctx.containers = list
  -- the components this stack has: the file's, the live mw's, the engine's
  local known = {}
  if ctx.def then for name in pairs(ctx.def.components) do known[name] = true end end
  for _, row in ipairs(ctx.live and lookup.list_of(ctx.live.components) or {}) do
    if type(row) == "table" and row.component then known[row.component] = true end
  end
  for name in pairs(ctx.by) do known[name] = true end
  if not ctx.live and #list == 0 then
    local filter = { label = owner.filter(ctx.stack) }
    local left = op == "down" and (#(ctx.engine:network_list(filter) or {}) + #(ctx.engine:volume_list(filter) or {})) or 0
    if left == 0 then
      cli.say(string.format("no stack %s: no container of mw's and no mw running it", ctx.stack))
      return nil, FAILURE
    end
  end
  for _, name in ipairs(rest) do
    if not known[name] then
      cli.say(string.format("no component %s in stack %s", name, ctx.stack))
      return nil, FAILURE
    end
  end
  ctx.deps = graph_of(ctx.def, ctx.live)
  local n = 0
  for _ in pairs(ctx.by) do n = n + 1 end
  if not ctx.deps and #rest ~= 1 and n > 1 then
    cli.say("warning: no stack file known for stack " .. ctx.stack .. " (give it): acting without dependency order")
  end
  return ctx
end

-- Every component of the stack that has containers (or that the file names), in start order.
local function all_names(ctx)
  local out, seen = {}, {}
  for _, name in ipairs(ctx.def and ctx.def.order or {}) do
    if ctx.by[name] then out[#out + 1] = name seen[name] = true end
  end
  local rest = {}
  for name in pairs(ctx.by) do if not seen[name] then rest[#rest + 1] = name end end
  table.sort(rest)
  for _, name in ipairs(rest) do out[#out + 1] = name end
  return out
end

function M.stop(args, cli)
  local ctx, code = M.prepare("stop", args, cli)
  if not ctx then return code end
  if ctx.live then return ask(ctx, "stop", ctx.names) end
  local names = #ctx.names > 0 and ctx.names or all_names(ctx)
  local ok = stop_engine(ctx, names)
  ok = stop_holders(ctx, names) and ok
  local marks = M.read_marks(ctx.dir, ctx.stack)
  for _, name in ipairs(names) do marks[name] = true end
  write_marks(ctx.dir, ctx.stack, marks)
  return ok and OK or FAILURE
end

function M.start(args, cli)
  local ctx, code = M.prepare("start", args, cli)
  if not ctx then return code end
  if ctx.live then return ask(ctx, "start", ctx.names) end
  local names = #ctx.names > 0 and with_stopped_deps(ctx, ctx.names) or all_names(ctx)
  local ok = start_engine(ctx, names)
  local marks = M.read_marks(ctx.dir, ctx.stack)
  for _, name in ipairs(names) do marks[name] = nil end
  write_marks(ctx.dir, ctx.stack, marks)
  return ok and OK or FAILURE
end

function M.restart(args, cli)
  local ctx, code = M.prepare("restart", args, cli)
  if not ctx then return code end
  if ctx.live then return ask(ctx, "restart", ctx.names) end
  local names = #ctx.names > 0 and ctx.names or all_names(ctx)
  local ok = stop_engine(ctx, names)
  -- what was stopped is now listed as exited: look again, then start in order
  local list = lookup.containers(ctx.engine, ctx.stack) or {}
  ctx.by = {}
  for _, ctr in ipairs(list) do
    local comp = ctr.Labels["mw.component"]
    if comp then ctx.by[comp] = ctx.by[comp] or {} table.insert(ctx.by[comp], ctr) end
  end
  ok = start_engine(ctx, with_stopped_deps(ctx, names)) and ok
  local marks = M.read_marks(ctx.dir, ctx.stack)
  for _, name in ipairs(names) do marks[name] = nil end
  write_marks(ctx.dir, ctx.stack, marks)
  return ok and OK or FAILURE
end

-- Waits until the mw whose pid it was stops answering on its socket.
local function wait_gone(ctx)
  local deadline = core.now() + LEAVE_WAIT
  while core.now() < deadline do
    local v = api.query(ctx.dir, ctx.stack, "/api/status", { timeout = 1 })
    if type(v) ~= "table" then return true end
    core.sleep(0.05)
  end
  return false
end

function M.down(args, cli)
  local ctx, code = M.prepare("down", args, cli)
  if not ctx then return code end
  local engine, say = ctx.engine, ctx.say
  local rc = OK
  if ctx.live then
    local timeout = 60
    for _, comp in pairs(ctx.def and ctx.def.components or {}) do timeout = timeout + (comp.stop_grace or 10) end
    local v, err = api.query(ctx.dir, ctx.stack, "/api/down", { method = "POST", timeout = timeout })
    if not v then say("down: " .. tostring(err)) return FAILURE end
    if not wait_gone(ctx) then say("down: the mw of stack " .. ctx.stack .. " did not exit") return FAILURE end
    -- look again: what the mw stopped is exited now
    local list = lookup.containers(engine, ctx.stack) or {}
    ctx.by, ctx.containers = {}, list
    for _, ctr in ipairs(list) do
      local comp = ctr.Labels["mw.component"]
      if comp then ctx.by[comp] = ctx.by[comp] or {} table.insert(ctx.by[comp], ctr) end
    end
  else
    if not stop_engine(ctx, all_names(ctx)) then rc = FAILURE end
  end
  local target = { stack = ctx.stack }
  local any = false
  -- the containers, then the network holders they joined (mw.holder)
  local ctrs = {}
  for _, list in ipairs { ctx.containers, lookup.holders(engine, ctx.stack) or {} } do
    for _, ctr in ipairs(list) do ctrs[#ctrs + 1] = ctr end
  end
  for _, ctr in ipairs(ctrs) do
    if destroy.owned(ctr.Labels, target) then
      any = true
      local what = ctr.Labels["mw.holder"] and "network holder" or "container"
      local ok, err = engine:remove(ctr.Id, { force = true, volumes = ctx.opts.volumes })
      if not ok then say(string.format("cannot remove %s %s: %s", what, name_of(ctr), tostring(err))) rc = FAILURE
      elseif err ~= "gone" then lookup.write("removed " .. what .. " " .. name_of(ctr) .. "\n") end
    end
  end
  local filter = { label = owner.filter(ctx.stack) }
  local nets = engine:network_list(filter) or {}
  for _, net in ipairs(nets) do
    if destroy.owned(net.Labels, target) then
      any = true
      local ok, err = engine:network_remove(net.Id)
      if not ok then say(string.format("cannot remove network %s: %s", tostring(net.Name), tostring(err))) rc = FAILURE
      elseif err ~= "gone" then lookup.write("removed network " .. tostring(net.Name) .. "\n") end
    end
  end
  local kept = 0
  for _, vol in ipairs(engine:volume_list(filter) or {}) do
    if destroy.owned(vol.Labels, target) then
      any = true
      if ctx.opts.volumes then
        local ok, err = engine:volume_remove(vol.Name)
        if not ok then say(string.format("cannot remove volume %s: %s", vol.Name, tostring(err))) rc = FAILURE
        elseif err ~= "gone" then lookup.write("removed volume " .. vol.Name .. "\n") end
      else
        kept = kept + 1
      end
    end
  end
  if not any and not ctx.live then
    say(string.format("no stack %s: no container, network or volume of mw's and no mw running it", ctx.stack))
    return FAILURE
  end
  if kept > 0 then
    say(string.format("kept %d volume%s (use --volumes to remove %s)", kept, kept == 1 and "" or "s",
      kept == 1 and "it" or "them"))
  end
  M.clear_marks(ctx.dir, ctx.stack)
  io.stdout:flush()
  return rc
end

return M
