-- The command line: parses argv, runs one command, and returns mw's exit status.
local core = require "mw.core"

local M = {}

M.VERSION = "0.1.0"

-- Exit statuses (documented in README and `mw help`).
local OK, FAILURE, USAGE = 0, 1, 2
M.EXIT = { ok = OK, failure = FAILURE, usage = USAGE }

local function say(msg) io.stderr:write("mw: ", msg, "\n") end

-- ---------------------------------------------------------------------------------------------
-- argument parsing: flags may come anywhere; "--x=v" and "--x v" both work

local function parse(args, spec)
  local o, rest = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do rest[#rest + 1] = args[j] end
      break
    end
    local name, val = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$") or (a:match("^%-(%a)$"))
    if name then
      local kind = spec[name]
      if kind == nil then return nil, "unknown option " .. a end
      if type(kind) == "string" and spec[kind] ~= nil and type(spec[kind]) ~= "string" then
        name, kind = kind, spec[kind]       -- a short alias
      end
      local key = name:gsub("-", "_")
      if kind == true then
        if val then return nil, "option --" .. name .. " takes no value" end
        o[key] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, "option " .. a .. " needs a value" end
        end
        o[key] = val
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return o, rest
end

-- ---------------------------------------------------------------------------------------------
-- help

local HELP = [[
mw (Millwright) runs a multi-container Docker stack described in a Lua file and keeps it up.

usage: mw [--label NAME] <command> [options]

commands:
  run [stack.lua]           bring the stack up and supervise it (default file: ./stack.lua)
      --force                 take over from the mw already running this stack
      --log-format text|json  how events are printed (default text)
      --state-dir DIR         where the queue and status files live
      --listen 127.0.0.1:PORT also serve the API, /metrics and the dashboard on loopback TCP
  check [stack.lua]         load and validate the stack file, print the plan
  policy preview [stack.lua] <component> [N]
                            the restart schedule for N consecutive failures (default 10)
  status [stack.lua | --stack S] [--json]
                            one row per component, from the engine and the running mw
  inspect <component> [--stack S]
                            the component's introspection JSON (its heartbeat endpoint)
  logs [-f] [--tail N] [component...] [--stack S]
                            the components' logs, each line prefixed by its component
  kill <component> [--stack S]
                            force-remove the component's container; a running mw recovers it
  destroy [stack.lua | --stack S | --all] [--volumes]
                            remove what mw made for a stack (never anything unlabelled)
  import compose.yaml [-o stack.lua]   write a stack.lua equivalent to a compose file
  version                   versions of mw, Lua, libuv, libcurl and the engine
  help [command]            this text

every command:
  --label NAME              the installation: act only on resources labelled used-by=NAME,
                            and label what it makes so (default millwright; env MW_LABEL)

exit status:
  0  success
  1  runtime failure: no engine, an engine error, an unknown component
  2  usage error or an invalid stack file (nothing was changed on the engine)

environment:
  DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY   as for docker
  MW_LABEL=NAME             the installation label, as --label (the option wins)
  NO_COLOR                  no colours in logs
  MW_LUA_PATH=DIR           load mw's Lua from a source tree instead of the binary
  MW_USER_MEMORY=SIZE       memory one call of stack-file code may add (default 64M)
]]

local function help()
  io.stdout:write(HELP)
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- version

local function version()
  local http = require "mw.http"
  local v = core.versions()
  print("mw " .. M.VERSION)
  print(string.format("Lua %s, libuv %s, libcurl %s", v.lua:gsub("^Lua ", ""), v.uv, http.curl_version()))
  local docker = require "mw.docker"
  local engine, err, code = docker.connect()
  if engine then
    print(string.format("engine %s at %s, API %s", tostring(engine.version), tostring(engine.where),
      tostring(engine.api)))
  else
    print("engine: none (" .. tostring(docker.explain(err, code)) .. ")")
  end
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- stack files

local function stack_file(rest)
  local f = rest[1]
  if f and f:match("%.lua$") then return table.remove(rest, 1) end
  return "stack.lua"
end

local function load_stack(file)
  local stack = require "mw.stack"
  local s, err = stack.load(file)
  if not s then
    io.stderr:write(err, "\n")
    return nil
  end
  return s
end

local function check(args)
  local o, rest = parse(args, { quiet = true, q = "quiet" })
  if not o then say(rest) return USAGE end
  local file = stack_file(rest)
  if #rest > 0 then say("check: unexpected argument " .. rest[1]) return USAGE end
  local s = load_stack(file)
  if not s then return USAGE end
  if not o.quiet then io.stdout:write(require("mw.stack").plan(s), "\n") end
  return OK
end

local function policy_preview(args)
  local sub = table.remove(args, 1)
  if sub ~= "preview" then say("usage: mw policy preview [stack.lua] <component> [N]") return USAGE end
  local o, rest = parse(args, {})
  if not o then say(rest) return USAGE end
  local file = stack_file(rest)
  local name, n = rest[1], tonumber(rest[2] or "10")
  if not name or not n or n < 1 or n > 1000 then
    say("usage: mw policy preview [stack.lua] <component> [N]") return USAGE
  end
  local s = load_stack(file)
  if not s then return USAGE end
  local c = s.components[name]
  if not c then say("no component " .. name .. " in " .. file) return FAILURE end
  local policy = require "mw.policy"
  local log = require "mw.log"
  local ok, rows = core.budget(policy.preview, { instructions = 1e8, seconds = 2 }, c.restart, math.floor(n))
  if not ok then say("policy preview of " .. name .. " failed: " .. tostring(rows)) return FAILURE end
  print(string.format("%s: %s", name, policy.describe(c.restart)))
  print(string.format("%-8s %-10s %-20s %s", "attempt", "delay", "action", "at"))
  local at = 0
  for _, r in ipairs(rows) do
    at = at + (r.delay or 0)
    print(string.format("%-8d %-10s %-20s +%s", r.attempt, log.dur(r.delay or 0), r.action, log.dur(at)))
  end
  return OK
end

-- ---------------------------------------------------------------------------------------------
-- run

local function run(args)
  local o, rest = parse(args, { force = true, ["log-format"] = "value", ["state-dir"] = "value", listen = "value" })
  if not o then say(rest) return USAGE end
  local log = require "mw.log"
  if o.log_format then
    if o.log_format ~= "text" and o.log_format ~= "json" then
      say("--log-format must be text or json") return USAGE
    end
    log.format = o.log_format
  end
  local file = stack_file(rest)
  if #rest > 0 then say("run: unexpected argument " .. rest[1]) return USAGE end
  local s = load_stack(file)
  if not s then return USAGE end
  local runner = require "mw.run"
  return runner.run { stack = s, file = file, force = o.force, state_dir = o.state_dir, listen = o.listen }
end

-- mw script FILE [args]: runs a Lua file as a task (tests, benchmarks, development).
local function script(args)
  local file = args[1]
  if not file then say("script: which file?") return USAGE end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local root = os.getenv("MW_LUA_PATH")
  if not root or root == "" then root = "." end
  package.path = table.concat({ dir .. "/?.lua", root .. "/tests/lib/?.lua", root .. "/tests/?.lua" }, ";")
  local chunk, err = loadfile(file, "t")
  if not chunk then say("script: " .. err) return USAGE end
  _G.arg = { [0] = file, table.unpack(args, 2) }
  local rc = chunk(table.unpack(args, 2))
  return math.tointeger(rc) or OK
end

local COMMANDS = {
  run = run, check = check, version = version, help = help, script = script,
  policy = policy_preview,
  import = function(args) return require("mw.import").main(args, { parse = parse, say = say }) end,
  ["--help"] = help, ["-h"] = help, ["--version"] = version,
}

-- The commands that act on a running stack live in mw.commands.
for _, name in ipairs { "status", "inspect", "logs", "kill", "destroy" } do
  COMMANDS[name] = function(args) return require("mw.commands")[name](args, { parse = parse, say = say }) end
end

-- The installation label, for every command: --label NAME (taken out of args before the
-- command parses its own options), else MW_LABEL, else the default -> true | nil, message.
-- It may also come before the command (`mw --label ci status`); `mw script` leaves the
-- arguments after it to the script.
local function installation(cmd, args, first)
  local name, from = os.getenv("MW_LABEL"), "MW_LABEL"
  if name == "" then name = nil end
  local i = 1
  while (cmd ~= "script" or i < first) and i <= #args do
    local a = args[i]
    if a == "--" then break end
    local v = a:match("^%-%-label=(.*)$")
    if v then
      name, from = v, "--label"
      table.remove(args, i)
    elseif a == "--label" then
      if args[i + 1] == nil then return nil, "option --label needs a value" end
      name, from = table.remove(args, i + 1), "--label"
      table.remove(args, i)
    else
      i = i + 1
    end
  end
  if name == nil then return true end
  local ok, err = require("mw.owner").set(name)
  if not ok then return nil, from .. ": " .. err end
  return true
end

function M.main(...)
  local args = { ... }
  -- options before the command: only --label
  local at = 1
  while args[at] == "--label" or (args[at] or ""):match("^%-%-label=") do
    at = at + (args[at] == "--label" and 2 or 1)
  end
  local cmd = table.remove(args, math.min(at, #args + 1))
  if cmd == nil then io.stderr:write(HELP) return USAGE end
  local f = COMMANDS[cmd]
  if not f then
    say("unknown command '" .. cmd .. "' (see mw help)")
    return USAGE
  end
  local lok, lerr = installation(cmd, args, at)
  if not lok then say(lerr) return USAGE end
  for _, a in ipairs(args) do
    if (a == "--help" or a == "-h") and cmd ~= "script" then return help() end
  end
  return f(args)
end

return M
