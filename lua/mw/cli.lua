-- The command line: parses argv and runs one command; its return value is mw's exit status.
local M = {}

M.EXIT = { ok = 0, failure = 1, usage = 2 }

local function version()
  local core = require "mw.core"
  local http = require "mw.http"
  print("mw " .. M.VERSION)
  print(_VERSION .. ", libuv " .. (require("mw.proc") and M.uv_version or "?") .. ", libcurl " .. http.curl_version())
  return 0
end

-- mw script FILE [args]: runs a Lua file as a task (tests, benchmarks, development).
local function script(args)
  local file = args[1]
  if not file then
    io.stderr:write("mw script: which file?\n")
    return 2
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local root = os.getenv("MW_LUA_PATH") or "."
  package.path = table.concat({ dir .. "/?.lua", root .. "/tests/lib/?.lua", root .. "/tests/?.lua" }, ";")
  local chunk, err = loadfile(file, "t")
  if not chunk then
    io.stderr:write("mw script: " .. err .. "\n")
    return 2
  end
  _G.arg = { [0] = file, table.unpack(args, 2) }
  local rc = chunk(table.unpack(args, 2))
  return math.tointeger(rc) or 0
end

M.VERSION = "0.1.0"

function M.main(...)
  local args = { ... }
  local cmd = table.remove(args, 1)
  if cmd == "version" then return version() end
  if cmd == "script" then return script(args) end
  io.stderr:write("mw: unknown command\n")
  return 2
end

return M
