-- `mw script FILE [args]`: runs a Lua file as a task (tests, benchmarks, development), with
-- the file's directory and the tree's tests/lib on package.path.
local M = {}

local OK, USAGE = 0, 2

function M.main(args, cli)
  local file = args[1]
  if not file then cli.say("script: which file?") return USAGE end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local root = os.getenv("MW_LUA_PATH")
  if not root or root == "" then root = "." end
  package.path = table.concat({ dir .. "/?.lua", root .. "/tests/lib/?.lua", root .. "/tests/?.lua" }, ";")
  local chunk, err = loadfile(file, "t")
  if not chunk then cli.say("script: " .. err) return USAGE end
  _G.arg = { [0] = file, table.unpack(args, 2) }
  local rc = chunk(table.unpack(args, 2))
  return math.tointeger(rc) or OK
end

return M
