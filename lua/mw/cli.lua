-- The command line: parses argv, finds the command in the one table of commands, runs it,
-- and returns mw's exit status. `mw help` is written from the same table.
local M = {}

M.VERSION = "0.1.0"

-- Exit statuses (documented in README and `mw help`).
local OK, USAGE = 0, 2
M.EXIT = { ok = OK, failure = 1, usage = USAGE }

function M.say(msg) io.stderr:write("mw: ", msg, "\n") end
local say = M.say

-- ---------------------------------------------------------------------------------------------
-- argument parsing: flags may come anywhere; "--x=v" and "--x v" both work

-- Splits args by spec ({ name = true (a flag) | "value" | "long name" (a short alias) }) ->
-- options (dashes in names become underscores), the other arguments | nil, message.
function M.parse(args, spec)
  local opts, rest = {}, {}
  local i = 1
  while i <= #args do
    local arg = args[i]
    if arg == "--" then
      for j = i + 1, #args do rest[#rest + 1] = args[j] end
      break
    end
    local name, val = arg:match("^%-%-([%w-]+)=(.*)$")
    name = name or arg:match("^%-%-([%w-]+)$") or (arg:match("^%-(%a)$"))
    if name then
      local kind = spec[name]
      if kind == nil then return nil, "unknown option " .. arg end
      if type(kind) == "string" and spec[kind] ~= nil and type(spec[kind]) ~= "string" then
        name, kind = kind, spec[kind]       -- a short alias
      end
      local key = name:gsub("-", "_")
      if kind == true then
        if val then return nil, "option --" .. name .. " takes no value" end
        opts[key] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, "option " .. arg .. " needs a value" end
        end
        opts[key] = val
      end
    else
      rest[#rest + 1] = arg
    end
    i = i + 1
  end
  return opts, rest
end

-- ---------------------------------------------------------------------------------------------
-- the commands

-- One entry per command, in the order `mw help` lists them: its name, the module whose
-- fn (default "main") runs it as fn(args, cli) -> exit status, and its lines in `mw help`
-- (none: not listed). help is this module's own.
local COMMANDS = {
  { name = "run", module = "mw.run", help = [[
  run [stack.lua]           bring the stack up and supervise it (default file: ./stack.lua)
      --force                 take over from the mw already running this stack
      --log-format text|json  how events are printed (default text)
      --state-dir DIR         where the queue and status files live
      --listen 127.0.0.1:PORT also serve the API, /metrics and the dashboard on loopback TCP
      --profile NAME          also run the components of this profile (repeatable; env MW_PROFILES)
      --coord etcd://H:P[,H:P...][/prefix]
                              one active mw across hosts: an etcd lease and election instead
                              of the local queue (env MW_COORD); engine writes are fenced on
                              the lease; --force revokes the leader's lease
      --coord-ttl N           the lease TTL in seconds (default 5, 2..3600)
      --coord-ca F, --coord-cert F, --coord-key F, --coord-user U[:PW]
                              etcd TLS and authentication (or ETCDCTL_CACERT, ETCDCTL_CERT,
                              ETCDCTL_KEY, ETCDCTL_USER, ETCDCTL_PASSWORD)
]] },
  { name = "check", module = "mw.cmd_check", help = [[
  check [stack.lua]         load and validate the stack file, print the plan
      --profile NAME          as for run: the plan with this profile's components
]] },
  { name = "policy", module = "mw.cmd_check", fn = "policy", help = [[
  policy preview [stack.lua] <component> [N]
                            the restart schedule for N consecutive failures (default 10);
                            attempt 1 (a first failure, or one after reset_after of running)
                            is restarted at once unless the policy sets first_delay;
                            with standby = true, the first failure is a promote (a frozen
                            standby ready), the next ones find none; a promote with no
                            standby ready is shown as a restart in place
]] },
  { name = "status", module = "mw.cmd_status", help = [[
  status [stack.lua | --stack S] [--json] [--coord etcd://...]
                            one row per component, from the engine and the running mw;
                            with --coord, which host's mw the etcd election made active
                            (a component's warm standby is a row of its own: "web standby")
]] },
  { name = "inspect", module = "mw.cmd_inspect", help = [[
  inspect [-p PORT] <component> [--stack S]
                            the component's introspection JSON (its heartbeat endpoint;
                            -p: GET the container port PORT instead, published on 127.0.0.1)
]] },
  { name = "logs", module = "mw.cmd_logs", help = [[
  logs [-f] [--tail N] [component...] [--stack S]
                            the components' logs, each line prefixed by its component
]] },
  { name = "exec", module = "mw.cmd_exec", own = true, help = [[
  exec [-i] [-t] <component>[-N] [--stack S] [--] command [arg...]
                            run a command in the component's running container
      -i, --interactive       pass stdin on to the command
      -t, --tty               give it a pseudo-terminal (with -i: mw's terminal goes raw)
      -e, --env K=V           set a variable (repeatable); -u, --user; -w, --workdir
                            exit status: the command's; 125 when mw could not run it
]] },
  { name = "stop", module = "mw.cmd_stop", fn = "stop", help = [[
  stop [component...] [stack.lua | --stack S]
                            stop gracefully (stop_grace), dependents first; a running mw keeps
                            them stopped (status: stopped by user) until start or restart
]] },
  { name = "start", module = "mw.cmd_stop", fn = "start", help = [[
  start [component...] [stack.lua | --stack S]
                            start what was stopped (and what it depends on), in dependency order
]] },
  { name = "restart", module = "mw.cmd_stop", fn = "restart", help = [[
  restart [component...] [stack.lua | --stack S]
                            stop gracefully, then start again in dependency order; a component
                            that gave up starts afresh (its failure history is cleared)
]] },
  { name = "down", module = "mw.cmd_stop", fn = "down", help = [[
  down [--volumes] [stack.lua | --stack S]
                            stop gracefully in order (a running mw ends its supervision), then
                            remove the containers and networks; named volumes and images stay
                            unless --volumes (which removes the volumes)
]] },
  { name = "kill", module = "mw.cmd_kill", help = [[
  kill <component> [--stack S]
                            force-remove the component's container; a running mw recovers it
]] },
  { name = "destroy", module = "mw.cmd_destroy", help = [[
  destroy [stack.lua | --stack S | --all] [--volumes]
                            remove what mw made for a stack (never anything unlabelled),
                            frozen standbys and kept failed containers included
]] },
  { name = "import", module = "mw.import", help = [[
  import compose.yaml [-o stack.lua] [--force]
                            write a stack.lua equivalent to a compose file: extends become
                            functions, include'd files' services join it, configs' content
                            is written to configs/<name> beside it (-o only); what has no
                            equivalent is a comment and one warning line on stderr;
                            env_file stays env_file (read by mw at load, values not
                            copied); a FIFO or device as an input file: exit 2, no wait
]] },
  { name = "version", module = "mw.cmd_version", help = [[
  version                   versions of mw, Lua, libuv, libcurl and the engine
]] },
  { name = "help", help = [[
  help [command]            this text, or one command's lines
]] },
  -- runs a Lua file as a task: for tests, benchmarks and development, so not listed
  { name = "script", module = "mw.cmd_script" },
}
M.COMMANDS = COMMANDS

-- Other spellings of a command.
local ALIASES = { ["--help"] = "help", ["-h"] = "help", ["--version"] = "version" }

local BY_NAME = {}
for _, command in ipairs(COMMANDS) do BY_NAME[command.name] = command end

-- The entry a command name (or alias) means -> entry | nil.
function M.command(name)
  return BY_NAME[ALIASES[name] or name]
end

-- ---------------------------------------------------------------------------------------------
-- help

local HELP_HEAD = [[
mw (Millwright) runs a multi-container Docker stack described in a Lua file and keeps it up.

usage: mw [--label NAME] <command> [options]

commands:
]]

local HELP_TAIL = [[

every command:
  --label NAME              the installation: act only on resources labelled used-by=NAME,
                            and label what it makes so (default millwright; env MW_LABEL)

exit status:
  0  success
  1  runtime failure: no engine, an engine error, an unknown component
  2  usage error or an invalid stack file (nothing was changed on the engine)
  125  mw exec: mw could not run the command (otherwise exec exits with the command's status)

environment:
  DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY   as for docker
  MW_LABEL=NAME             the installation label, as --label (the option wins)
  MW_COORD=etcd://...       run and status: coordinate on etcd, as --coord (MW_COORD_TTL too)
  NO_COLOR                  no colours in logs
  MW_LUA_PATH=DIR           load mw's Lua from a source tree instead of the binary
  MW_USER_MEMORY=SIZE       memory one call of stack-file code may add (default 64M)
  MW_PROFILES=a,b           the active profiles when no --profile is given (run, check, ...)
  MW_HEARTBEAT_PATH=published
                            heartbeats to published ports on 127.0.0.1, not inside each
                            container's network namespace (default auto: netns where mw may)
]]

-- The text of `mw help`: the head, every listed command's lines in table order, the tail.
function M.help_text()
  local parts = { HELP_HEAD }
  for _, command in ipairs(COMMANDS) do parts[#parts + 1] = command.help end
  parts[#parts + 1] = HELP_TAIL
  return table.concat(parts)
end

-- The text of `mw help <command>`: its usage lines, the options every command takes and the
-- exit statuses -> text | nil (no such command, or one not listed).
function M.command_help(name)
  local command = M.command(name or "")
  if not command or not command.help then return nil end
  return "usage: mw [--label NAME]" .. command.help:gsub("^ ", "", 1) .. HELP_TAIL
end

BY_NAME.help.run = function(args)
  local name = args and args[1]
  if name and name ~= "help" then
    local text = M.command_help(name)
    if not text then say("unknown command '" .. name .. "' (see mw help)") return USAGE end
    io.stdout:write(text)
    return OK
  end
  io.stdout:write(M.help_text())
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- main

-- The installation label, for every command: --label NAME (taken out of args before the
-- command parses its own options), else MW_LABEL, else the default -> true | nil, message.
-- It may also come before the command (`mw --label ci status`); `mw script` leaves the
-- arguments after it to the script.
local function installation(name, args, first)
  local label, from = os.getenv("MW_LABEL"), "MW_LABEL"
  if label == "" then label = nil end
  local i = 1
  while (name ~= "script" or i < first) and i <= #args do
    local arg = args[i]
    if arg == "--" then break end
    local value = arg:match("^%-%-label=(.*)$")
    if value then
      label, from = value, "--label"
      table.remove(args, i)
    elseif arg == "--label" then
      if args[i + 1] == nil then return nil, "option --label needs a value" end
      label, from = table.remove(args, i + 1), "--label"
      table.remove(args, i)
    else
      i = i + 1
    end
  end
  if label == nil then return true end
  local ok, err = require("mw.owner").set(label)
  if not ok then return nil, from .. ": " .. err end
  return true
end

-- Runs one command line (argv without the program name) -> exit status.
function M.main(...)
  local args = { ... }
  -- options before the command: only --label
  local at = 1
  while args[at] == "--label" or (args[at] or ""):match("^%-%-label=") do
    at = at + (args[at] == "--label" and 2 or 1)
  end
  local name = table.remove(args, math.min(at, #args + 1))
  if name == nil then io.stderr:write(M.help_text()) return USAGE end
  local command = M.command(name)
  if not command then
    say("unknown command '" .. name .. "' (see mw help)")
    return USAGE
  end
  -- a command that runs another (exec) owns only its leading arguments: the others are
  -- left alone, --label and --help among them
  local tail = {}
  if command.own then
    local own = require(command.module).own(args)
    for j = #args, own + 1, -1 do table.insert(tail, 1, table.remove(args, j)) end
  end
  local lok, lerr = installation(name, args, at)
  if not lok then say(lerr) return USAGE end
  for _, arg in ipairs(args) do
    if (arg == "--help" or arg == "-h") and name ~= "script" then
      return BY_NAME.help.run(command.help and name ~= "help" and { command.name } or nil)
    end
  end
  for _, arg in ipairs(tail) do args[#args + 1] = arg end
  if command.run then return command.run(args, M) end
  return require(command.module)[command.fn or "main"](args, M)
end

return M
