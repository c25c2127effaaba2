-- What the commands acting from outside `mw run` share: the stack their arguments name, mw's
-- containers of a stack found by label, which container a component or instance name means,
-- what a running mw knows (its API, else its status file), and two output helpers.
local core = require "mw.core"
local fs = require "mw.fs"
local docker = require "mw.docker"
local queue = require "mw.queue"
local owner = require "mw.owner"

local M = {}

local FAILURE, USAGE = 1, 2
-- The writer refreshes the file at least every 5 s: a file much older than that belongs to
-- a dead mw whose pid the kernel has given to another process.
local STALE_AFTER = 30

-- ---------------------------------------------------------------------------------------------
-- the stack the arguments name

-- The engine, or nil after saying why there is none.
function M.connect(say)
  local engine, err, code = docker.connect()
  if not engine then say(docker.explain(err, code)) end
  return engine
end

-- Takes the one argument naming a stack file out of rest -> file | nil | false (two given).
function M.take_file(rest)
  local file
  for i = #rest, 1, -1 do
    if rest[i]:match("%.lua$") then
      if file then return false end
      file = table.remove(rest, i)
    end
  end
  return file
end

-- The stack file the first argument names, taken out of rest; else ./stack.lua.
function M.first_file(rest)
  local file = rest[1]
  if file and file:match("%.lua$") then return table.remove(rest, 1) end
  return "stack.lua"
end

-- The active profiles: every `--profile NAME` (or --profile=NAME), taken out of args; without
-- one, MW_PROFILES (comma-separated) -> list | nil, message.
function M.take_profiles(args)
  local list, given = {}, false
  local i = 1
  while i <= #args do
    local arg = args[i]
    if arg == "--" then break end
    local value = arg:match("^%-%-profile=(.*)$")
    if value == nil and arg == "--profile" then
      value = args[i + 1]
      if value == nil then return nil, "option --profile needs a value" end
      table.remove(args, i + 1)
    end
    if value ~= nil then
      table.remove(args, i)
      given = true
      for name in value:gmatch("[^,]+") do list[#list + 1] = name end
      if not value:find("[^,%s]") then return nil, "option --profile needs a profile name" end
    else
      i = i + 1
    end
  end
  if not given then
    for name in (os.getenv("MW_PROFILES") or ""):gmatch("[^,]+") do
      name = name:match("^%s*(.-)%s*$")
      if name ~= "" then list[#list + 1] = name end
    end
  end
  return list
end

-- Loads a stack file, printing its one-line error as `mw check` does -> stack | nil.
-- profiles: the active ones (default: MW_PROFILES).
function M.load_file(file, profiles)
  if profiles == nil then profiles = M.take_profiles({}) end
  local def, err = require("mw.stack").load(file, { profiles = profiles })
  if not def then io.stderr:write(tostring(err), "\n") end
  return def
end

-- The stack the options (--stack) and arguments (a stack file) name -> { name, def }
-- (either may be nil) | nil, exit code after saying why.
function M.stack_arg(opts, rest, say, what)
  local file = M.take_file(rest)
  if file == false then say(what .. ": give one stack file") return nil, USAGE end
  local def
  if file then
    def = M.load_file(file)
    if not def then return nil, USAGE end
    if opts.stack and opts.stack ~= def.name then
      say(string.format("%s: %s is stack %s, but --stack says %s", what, file, def.name, opts.stack))
      return nil, USAGE
    end
  end
  return { name = opts.stack or (def and def.name), def = def }
end

-- The state directory the options name (--state-dir), for this installation.
function M.state_dir(opts)
  return owner.state_dir(opts.state_dir or queue.default_dir())
end

-- ---------------------------------------------------------------------------------------------
-- containers by label

-- A container's component, instance number and key ("web", "web-2": instance 1 is named
-- like its component) from its labels; containers from before scaling have no instance.
function M.identity(labels)
  labels = labels or {}
  local comp = labels["mw.component"]
  local instance = math.tointeger(tonumber(labels["mw.instance"] or "")) or 1
  return comp, instance, (comp and instance > 1) and (comp .. "-" .. instance) or comp
end

-- The containers of this installation carrying `mark` (a label key), of one stack or all, and
-- with `key`=`value` when given -> list | nil, err.
local function owned_list(engine, stack, mark, key, value)
  local list, err = engine:list { label = owner.filter(stack, mark, value and (key .. "=" .. value) or nil) }
  if not list then return nil, err end
  local mine = {}
  for _, ctr in ipairs(list) do
    local labels = ctr.Labels or {}
    if owner.owns(labels) and labels["mw.stack"] and labels[mark] and (not stack or labels["mw.stack"] == stack)
        and (not value or labels[key] == value) then
      mine[#mine + 1] = ctr
    end
  end
  return mine
end

-- mw's containers, of one stack or all, of one component or all -> list | nil, err.
function M.containers(engine, stack, comp)
  -- mw.config-hash is set only by mw's own create: a container someone ran from an image mw
  -- built inherits the image's used-by and mw.stack labels, but not this one
  return owned_list(engine, stack, "mw.config-hash", "mw.component", comp)
end

-- The network holders (mw.holder) of a stack, or of every stack -> list | nil, err.
function M.holders(engine, stack)
  return owned_list(engine, stack, "mw.holder")
end

-- A list entry's container name, without its "/" (its short id when it has none).
function M.name_of(ctr)
  local name = ctr.Names and ctr.Names[1]
  return name and (name:gsub("^/", "")) or ctr.Id:sub(1, 12)
end

-- The id of the container whose network namespace a container joins (its inspect or list
-- entry's HostConfig.NetworkMode "container:<id>") | nil.
function M.joined(ctr)
  return tostring((ctr.HostConfig or {}).NetworkMode):match("^container:(%x+)$")
end

-- The network holder (mw.holder) a container of stack joins, inspected, from the container's
-- inspect or list entry (HostConfig.NetworkMode "container:<id>") -> info | nil when it has none.
function M.holder_of(engine, ctr, stack)
  local id = M.joined(ctr)
  local info = id and engine:inspect(id)
  local labels = info and info.Config and info.Config.Labels or {}
  if not (owner.owns(labels) and labels["mw.holder"] and labels["mw.stack"] == stack) then return nil end
  return info
end

-- Which stack a component name means, from the containers carrying it -> stack | nil, message.
function M.pick_stack(comp, list, stack)
  local stacks, seen = {}, {}
  for _, ctr in ipairs(list) do
    local name = (ctr.Labels or {})["mw.stack"]
    if name and not seen[name] then
      seen[name] = true
      stacks[#stacks + 1] = name
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

-- The container a name means now: a running one first, then the lowest instance, then the
-- newest.
function M.current(list)
  local best, best_instance
  for _, ctr in ipairs(list) do
    local _, instance = M.identity(ctr.Labels)
    if not best then
      best, best_instance = ctr, instance
    else
      local running, best_running = ctr.State == "running", best.State == "running"
      local better
      if running ~= best_running then better = running
      elseif instance ~= best_instance then better = instance < best_instance
      else better = (ctr.Created or 0) > (best.Created or 0) end
      if better then best, best_instance = ctr, instance end
    end
  end
  return best
end

-- Finds what a name means: a component (all its instances) or one instance by its key
-- ("web-2") -> stack, containers, component, instance or nil | nil, message.
function M.resolve(engine, name, stack)
  local list, err = M.containers(engine, stack, name)
  if not list then return nil, err end
  local comp, instance = name, nil
  if #list == 0 then
    local base, n = name:match("^(.+)%-(%d+)$")
    if base then
      local all, aerr = M.containers(engine, stack, base)
      if not all then return nil, aerr end
      for _, ctr in ipairs(all) do
        local _, idx = M.identity(ctr.Labels)
        if idx == tonumber(n) then list[#list + 1] = ctr end
      end
      if #list > 0 then comp, instance = base, math.tointeger(tonumber(n)) end
    end
  end
  local found, why = M.pick_stack(name, list, stack)
  if not found then return nil, why end
  return found, list, comp, instance
end

-- The prologue of a command that acts on one component, `mw <what> <component>[-N]
-- [stack.lua | --stack S]`: given what cli.parse left (opts with opts.stack, rest with the
-- component and at most a stack file), finds the stack, connects to the engine and finds
-- the component's containers (all its instances, or the one a key like web-2 names).
--   -> { comp = name as given, group = component, instance = n | nil, stack = name,
--        list = containers, engine, target = { name, def } (lookup.stack_arg) }
--   | nil, exit status (2 usage, 1 failure), after saying why in one line.
-- usage is the line said when rest holds no component or more than one.
function M.component_args(opts, rest, cli, what, usage)
  local target, code = M.stack_arg(opts, rest, cli.say, what)
  if not target then return nil, code end
  local comp = rest[1]
  if not comp or #rest > 1 then cli.say(usage) return nil, USAGE end
  local engine = M.connect(cli.say)
  if not engine then return nil, FAILURE end
  local stack, list, group, instance = M.resolve(engine, comp, target.name)
  if not stack then
    if target.def and target.def.components[comp] then
      cli.say(string.format("component %s of stack %s has no container", comp, target.def.name))
    elseif target.name and not target.def and #(M.containers(engine, target.name) or { true }) == 0 then
      cli.say(string.format("no stack %s: mw has no container of it on this engine", target.name))
    else
      cli.say(list)
    end
    return nil, FAILURE
  end
  return { comp = comp, group = group, instance = instance, stack = stack, list = list,
           engine = engine, target = target }
end

-- ---------------------------------------------------------------------------------------------
-- what a running mw knows

-- v when it is a table, else an empty list (a status document from a file may say anything).
function M.list_of(v)
  if type(v) ~= "table" then return {} end
  return v
end

-- Whether a status file describes a running mw: its pid is alive and it was written lately.
function M.is_live(doc, now, alive)
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

local function read_doc(dir, stack)
  local text = fs.read(dir .. "/" .. stack .. "/status.json")
  if not text then return nil end
  local doc = docker.decode(text)
  if type(doc) ~= "table" or doc.stack ~= stack then return nil end
  return doc
end

-- The running mw's status of a stack -> doc | nil (none, or a dead mw's), and the file's
-- content either way (a dead mw's still says where the stack file is).
function M.live_status(dir, stack)
  -- a running mw answers on its socket; its status file is the fallback
  local answer = require("mw.api").query(dir, stack, "/api/status")
  if type(answer) == "table" and answer.components then return answer, answer end
  local doc = read_doc(dir, stack)
  if M.is_live(doc, core.time(), pid_alive) then return doc, doc end
  return nil, doc
end

-- The row of one component instance (by key) in a status document -> row | nil.
function M.row_of(doc, key)
  for _, row in ipairs(M.list_of(doc and doc.components)) do
    if type(row) == "table" and row.name == key then return row end
  end
  return nil
end

-- ---------------------------------------------------------------------------------------------
-- output

-- Whether to colour what goes to fd: a terminal, and NO_COLOR unset or empty.
function M.color_ok(fd)
  local no_color = os.getenv("NO_COLOR")
  return core.isatty(fd) and (no_color == nil or no_color == "")
end

-- Writes to stdout -> true | nil, err (a closed pipe is no error of the command's).
function M.write(text)
  local ok, err = io.stdout:write(text)
  if not ok then return nil, err end
  return true
end

return M
