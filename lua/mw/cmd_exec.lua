-- `mw exec`: runs a command in a component's running container, as `docker exec` does —
-- output demultiplexed onto mw's stdout and stderr, stdin passed on with -i, a
-- pseudo-terminal with -t (mw's own terminal raw meanwhile, its size passed on), signals
-- passed on, and the command's exit status as mw's. It talks to the engine directly, so it
-- works with or without an `mw run` of the stack.
local core = require "mw.core"
local frames = require "mw.frames"
local lookup = require "mw.lookup"
local status = require "mw.cmd_status"

local M = {}

local USAGE = 2
-- mw's own failure (no such component, not running, the engine refused): as docker exec's
-- 125, so that it cannot be taken for the command's own 1.
M.FAILED = 125
local FAILED = M.FAILED
-- Bytes of stdin queued toward the engine before mw stops reading more.
local STDIN_BACKLOG = 1024 * 1024
local STDIN_CHUNK = 64 * 1024
-- How long to ask for the exit code once the output has ended: the engine records it a
-- moment after closing the stream.
local EXIT_WAIT = 10
local BROKEN_PIPE = 128 + 13     -- a shell's status for a process killed by SIGPIPE

local USAGE_LINE = "usage: mw exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] [stack.lua] <component>[-N] "
  .. "[--stack S] [--] command [arg...]"

-- Options that take a value, by every spelling; the others are flags.
local VALUED = { stack = "stack", env = "env", e = "env", user = "user", u = "user",
  workdir = "workdir", w = "workdir", label = "label" }
local FLAGS = { interactive = "interactive", i = "interactive", tty = "tty", t = "tty" }

-- Parses exec's arguments: options and [stack.lua] <component>, then the command: from
-- the first word after the component that is not an option, or after "--". Everything from
-- there on is the command's, its options included (`mw exec web ls --help`)
-- -> opts, { [file,] component }, command, index of the command's first argument
-- | nil, message.
function M.parse(args)
  local opts, rest = { env = {} }, {}
  local i = 1
  local function value(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then return nil, "option " .. name .. " needs a value" end
    return args[i]
  end
  while i <= #args do
    local arg = args[i]
    local have_component = #rest > 0 and not rest[#rest]:match("%.lua$")
    if arg == "--" then
      if not have_component then return nil, "give the component before --" end
      break
    end
    if have_component and not arg:match("^%-.") then break end   -- the command's first word
    local long, inline = arg:match("^%-%-([%w-]+)=(.*)$")
    long = long or arg:match("^%-%-([%w-]+)$")
    if long then
      if VALUED[long] then
        local v, err = value(arg, inline)
        if not v then return nil, err end
        if VALUED[long] == "env" then opts.env[#opts.env + 1] = v else opts[VALUED[long]] = v end
      elseif FLAGS[long] and not inline then
        opts[FLAGS[long]] = true
      else
        return nil, "unknown option " .. arg
      end
    elseif arg:match("^%-%a") then
      -- a cluster of short flags (-it), the last of which may take a value (-e K=V, -eK=V)
      local j = 2
      while j <= #arg do
        local ch = arg:sub(j, j)
        if FLAGS[ch] then
          opts[FLAGS[ch]] = true
          j = j + 1
        elseif VALUED[ch] then
          local rest_of = arg:sub(j + 1)
          local v, err = value("-" .. ch, rest_of ~= "" and rest_of or nil)
          if not v then return nil, err end
          if VALUED[ch] == "env" then opts.env[#opts.env + 1] = v else opts[VALUED[ch]] = v end
          break
        else
          return nil, "unknown option -" .. ch .. (#arg > 2 and (" in " .. arg) or "")
        end
      end
    else
      rest[#rest + 1] = arg
    end
    i = i + 1
  end
  if args[i] == "--" then i = i + 1 end
  local cmd = {}
  for j = i, #args do cmd[#cmd + 1] = args[j] end
  return opts, rest, cmd, i
end

-- How many leading arguments are mw's (the cli looks for --label and --help only there):
-- the rest is the command's.
function M.own(args)
  local ok, _, _, first = M.parse(args)
  if not ok then return #args end
  return first - 1
end

-- ---------------------------------------------------------------------------------------------
-- the attached streams

local function done_or_dead(task)
  local s = task:status()
  return s == "done" or s == "failed" or s == "cancelled"
end

local function stop(task)
  if task and not done_or_dead(task) then core.cancel(task) end
end

-- Copies the exec's output to mw's stdout and stderr until the engine closes the stream
-- -> true | false when mw's stdout or stderr is gone (a closed pipe: `mw exec web yes | head`).
local function pump_output(conn, first, tty, say)
  local demux = not tty and frames.new() or nil
  local function emit(chunk)
    if chunk == "" then return true end
    if tty then
      return io.stdout:write(chunk) and io.stdout:flush()
    end
    local got, err = demux:feed(chunk)
    for _, f in ipairs(got) do
      local out = (f[1] == "stderr" or f[1] == "error") and io.stderr or io.stdout
      if not out:write(f[2]) then return false end
    end
    if err then say("exec output: " .. err) end
    return io.stdout:flush()
  end
  if not emit(first) then return false end
  while true do
    local chunk = conn:read()
    if not chunk then return true end
    if not emit(chunk) then return false end
  end
end

-- Copies mw's stdin to the exec until its end, then half-closes: the command reads end of
-- file and its output still comes back. Not with a terminal: there the engine takes the end
-- of stdin for the end of the session and stops the output too (moby's attach: "when stdin
-- is closed ..., close stdout and stderr" unless stdin-once without a TTY), and a terminal
-- has no end of file to pass on anyway (^D is a byte like any other).
local function pump_input(conn, tty, input)
  if input then
    while true do
      local chunk = input:read()
      if not chunk then break end
      if not conn:write(chunk) then break end
      while conn:queued() > STDIN_BACKLOG do core.sleep(0.01) end
    end
  else
    -- a regular file or /dev/null: reading it never blocks the loop for long
    while true do
      local chunk = io.stdin:read(STDIN_CHUNK)
      if not chunk then break end
      if not conn:write(chunk) then break end
      while conn:queued() > STDIN_BACKLOG do core.sleep(0.01) end
    end
  end
  if not tty then conn:shutdown() end
end

-- Passes a signal mw got on to the command: the engine has no call for it, but exec
-- inspect gives the process's pid on the host (the engine's own pid namespace). A signal
-- that came before the process did waits for it (up to START_WAIT); one that comes after
-- it ended is dropped.
local START_WAIT = 10
local function pass_signal(engine, exec_id, name, say)
  local deadline = core.now() + START_WAIT
  local pid
  while true do
    local info = engine:exec_inspect(exec_id)
    if not info then return end
    pid = math.tointeger(info.Pid)
    if info.Running and pid and pid > 0 then break end
    if info.ExitCode ~= nil then return end   -- it has ended (null until then)
    if core.now() > deadline then return end
    core.sleep(0.05)
  end
  local ok, err = core.kill(pid, name)
  if not ok then say(string.format("exec: cannot pass SIG%s on to pid %d: %s", name, pid, tostring(err))) end
end

-- The exit code once the engine has recorded it -> code | nil, err.
local function exit_code(engine, exec_id)
  local deadline = core.now() + EXIT_WAIT
  while true do
    local info, err = engine:exec_inspect(exec_id)
    if not info then return nil, err end
    if not info.Running and math.tointeger(info.ExitCode) then return math.tointeger(info.ExitCode) end
    if core.now() > deadline then return nil, "the engine has no exit code for it" end
    core.sleep(0.02)
  end
end

-- ---------------------------------------------------------------------------------------------

function M.main(args, cli)
  local opts, rest, cmd = M.parse(args)
  if not opts then cli.say(rest) return USAGE end
  if #rest == 0 then cli.say(USAGE_LINE) return USAGE end
  if #cmd == 0 then
    cli.say(string.format("exec: no command: say what to run in %s (mw exec %s -- command [arg...])",
      rest[#rest], rest[#rest]))
    return USAGE
  end
  local tty_in = opts.tty and opts.interactive
  if tty_in and not core.isatty(0) then
    cli.say("exec: -t with -i needs stdin to be a terminal (drop -t to pass a pipe or a file)")
    return USAGE
  end
  local found, code = lookup.component_args(opts, rest, cli, "exec", USAGE_LINE)
  if not found then return code == USAGE and USAGE or FAILED end
  local engine = found.engine
  local ctr = lookup.current(found.list)
  if ctr.State ~= "running" then
    cli.say(string.format("exec: component %s of stack %s is not running (%s)", found.comp, found.stack,
      status.state_text(status.engine_row(ctr, nil, 0))))
    return FAILED
  end

  local tty_mod = opts.tty and require("mw.tty") or nil
  local term_fd = core.isatty(1) and 1 or core.isatty(0) and 0 or nil
  local function size()
    if not tty_mod or not term_fd then return nil end
    local cols, rows = tty_mod.size(term_fd)
    if cols and cols > 0 and rows > 0 then return { cols, rows } end
    return nil
  end
  local exec_id, err = engine:exec_create(ctr.Id, cmd, {
    tty = opts.tty, stdin = opts.interactive, env = #opts.env > 0 and opts.env or nil,
    user = opts.user, workdir = opts.workdir, size = size(),
  })
  if not exec_id then cli.say(string.format("exec in %s: %s", found.comp, tostring(err))) return FAILED end
  -- from here on a signal is the command's: caught before the process starts, passed on once
  -- it runs
  local signal = require "mw.signal"
  local sigs = signal.watch { "INT", "TERM", "HUP" }

  -- raw only while attached: closed (restored) on return, on error, and by __gc at exit
  local raw, rerr
  if tty_in then
    raw, rerr = require("mw.tty").raw(0)
    if not raw then sigs:close() cli.say("exec: " .. tostring(rerr)) return FAILED end
  end
  local _ <close> = raw
  local conn, first = engine:exec_attach(exec_id, opts.tty)
  if not conn then
    sigs:close()
    if raw then raw:close() end
    cli.say(string.format("exec in %s: %s", found.comp, tostring(first)))
    return FAILED
  end

  local tasks = {}
  local function resize()
    local now = size()
    if now then engine:exec_resize(exec_id, now[1], now[2]) end
  end
  local winch
  if tty_mod and term_fd then
    winch = signal.watch { "WINCH" }
    tasks[#tasks + 1] = core.spawn(function()
      resize()
      while winch:wait() do resize() end
    end, "exec resize")
  end
  tasks[#tasks + 1] = core.spawn(function()
    while true do
      local name = sigs:wait()
      if not name then return end
      pass_signal(engine, exec_id, name, cli.say)
    end
  end, "exec signals")
  -- stdin on the loop when it is a terminal, pipe or socket (else read plainly)
  local input = opts.interactive and require("mw.net").open(0) or nil
  if opts.interactive then
    tasks[#tasks + 1] = core.spawn(function() pump_input(conn, opts.tty, input) end, "exec stdin")
  end

  local ok, perr = pcall(pump_output, conn, first, opts.tty, cli.say)
  if ok and perr == false then
    -- nobody reads the output any more: as a shell pipeline's writer would get SIGPIPE, the
    -- command gets SIGTERM (else it would block on a full pipe in the container), and mw
    -- exits as a process killed by SIGPIPE does
    pass_signal(engine, exec_id, "TERM", function() end)
  end
  for _, task in ipairs(tasks) do stop(task) end
  sigs:close()
  if winch then winch:close() end
  if input then input:close() end
  conn:close()
  if raw then raw:close() end
  io.stdout:flush()
  if not ok then error(perr, 0) end
  if perr == false then return BROKEN_PIPE end

  local rc, xerr = exit_code(engine, exec_id)
  if not rc then cli.say(string.format("exec in %s: %s", found.comp, tostring(xerr))) return FAILED end
  return rc
end

return M
