-- Runs mw (or any program) as a child to completion, for tests: args, environment, working
-- directory, stdin and a deadline -> exit code ("timeout" when killed at the deadline), stdout,
-- stderr, seconds taken. The child's output goes to files in a temp dir (tests/lib/tmp.lua), so
-- a chatty child never blocks on a pipe, and a hang fails the case instead of the run.
local core = require "mw.core"
local proc = require "mw.proc"
local fs = require "mw.fs"
local tmp = require "tmp"

local run = {}

run.MW = os.getenv("MW_BIN") or "./mw"
-- what a child gets from this process's environment unless opts.inherit says otherwise
run.INHERIT = { "PATH", "MW_LUA_PATH", "DOCKER_HOST", "HOME", "XDG_RUNTIME_DIR" }

-- The environment for a child, a list of "K=V": each name of `inherit` (default run.INHERIT)
-- that is set here, then `extra`; a name given in `extra` replaces an inherited one. PATH is
-- always set (/usr/bin:/bin if this process has none).
function run.env(extra, inherit)
  local list, at = {}, {}
  local function put(kv)
    local k = kv:match("^([^=]*)=") or kv
    if at[k] then list[at[k]] = kv else list[#list + 1] = kv; at[k] = #list end
  end
  put("PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"))
  for _, k in ipairs(inherit or run.INHERIT) do
    local v = os.getenv(k)
    if v and k ~= "PATH" then put(k .. "=" .. v) end
  end
  for _, kv in ipairs(extra or {}) do put(kv) end
  return list
end

-- exec "$@" with stdin, stdout and stderr redirected to the files named first
local REDIRECT = 'i=$1 o=$2 e=$3; shift 3; exec "$@" <"$i" >"$o" 2>"$e"'
local MERGED = 'i=$1 o=$2; shift 3; exec "$@" <"$i" >"$o" 2>&1'

-- Runs argv to completion -> code, stdout, stderr, seconds. opts:
--   env      a list of "K=V" added to the inherited variables (and replacing them)
--   inherit  the names to pass on (default run.INHERIT); true: the whole environment, env ignored
--   cwd      the child's working directory
--   stdin    a string for its stdin (default: empty)
--   timeout  seconds before it is killed (default 60)
--   merge    stderr into stdout, in order; the third result is then ""
function run.program(argv, opts)
  opts = opts or {}
  local d = tmp.dir()
  local inf, outf, errf = "/dev/null", d .. "/out", d .. "/err"
  if opts.stdin then
    inf = d .. "/in"
    assert(fs.write_atomic(inf, opts.stdin, 384))
  end
  local args, out = {}, nil
  if opts.merge and not opts.stdin then
    out = outf         -- proc.spawn writes stdout and stderr to one file itself: no shell between
  else
    args = { "/bin/sh", "-c", opts.merge and MERGED or REDIRECT, "sh", inf, outf, errf }
  end
  for _, a in ipairs(argv) do args[#args + 1] = a end
  local env
  if opts.inherit ~= true then env = run.env(opts.env, opts.inherit) end
  local t0 = core.now()
  local p = assert(proc.spawn { args = args, env = env, cwd = opts.cwd, out = out })
  local code = p:wait(opts.timeout or 60)
  if not code then
    p:kill("KILL")
    p:wait(5)
    code = "timeout"
  end
  local secs = core.now() - t0
  p:close()
  return code, fs.read(outf) or "", opts.merge and "" or (fs.read(errf) or ""), secs
end

-- Runs `mw <args>` (opts.bin: another mw binary) to completion; opts as run.program.
-- -> code, stdout, stderr, seconds
function run.mw(args, opts)
  local argv = { (opts and opts.bin) or run.MW }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return run.program(argv, opts)
end

return run
