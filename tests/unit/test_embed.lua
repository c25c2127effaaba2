-- The Lua modules mw carries inside its binary: compiled to bytecode at build time
-- (tools/embed.c) so a start does not parse them, with their debug information kept.
local t = require "t"
local fs = require "mw.fs"
local tmp = require "tmp"
local run = require "run"

-- runs a script in a child mw that loads its modules from the binary (MW_LUA_PATH empty)
local function embedded(src)
  local file = tmp.dir() .. "/probe.lua"
  assert(fs.write_atomic(file, src))
  return run.mw({ "script", file }, { env = { "MW_LUA_PATH=" }, timeout = 30 })
end

t.test("embedded modules keep their file names and line numbers (tracebacks, error messages)", function()
  local code, out, err = embedded [[
    local info = debug.getinfo(require("mw.run").main, "S")
    print(info.source, info.linedefined > 0)
    print(select(2, pcall(require("mw.json").encode, nil)) ~= nil)
    local ok, msg = pcall(require("mw.docker").parse_host, {})
    print(ok, msg)
    print(debug.traceback(coroutine.create(function() end)) ~= nil)
  ]]
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.eq(lines[1], "@lua/mw/run.lua\ttrue", "where mw.run's main is defined")
  t.match(lines[3] or "", "^false\tlua/mw/docker%.lua:%d+: ", "an error inside a module names its file and line")
end)

t.test("embedded modules are bytecode: the binary carries no module's source text", function()
  -- a comment exists only in the source; compiled, only the chunk's name is left
  local bin = assert(fs.read(run.MW))
  local src = assert(fs.read("lua/mw/run.lua"))
  local comment = src:match("^%-%- ([^\n]+)")
  t.ok(comment and #comment > 20, "lua/mw/run.lua opens with a comment")
  t.ok(not bin:find(comment, 1, true), "the comment of lua/mw/run.lua is not in " .. run.MW)
  t.ok(bin:find("lua/mw/run.lua", 1, true), "its chunk name is")
end)

os.exit(t.run())
