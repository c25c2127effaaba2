-- The test harness itself (tests/lib): t.run's leak check fails a file that leaves a handle open,
-- a reference anchored or a task running, and names what is left; its after-hooks run and the
-- temp paths of tests/lib/tmp.lua are gone when the file ends; run.mw passes args, env, cwd and
-- stdin, keeps stdout and stderr apart, and kills a child at its deadline. Each harness case
-- runs a small test file in a child `mw script`, as scripts/test.sh would.
local t = require "t"
local fs = require "mw.fs"
local tmp = require "tmp"
local run = require "run"

-- Runs `src` as a test file in a child -> exit code, output (stdout and stderr in order).
local function test_file(src)
  local d = tmp.dir()
  assert(fs.write_atomic(d .. "/test_x.lua", src, 420))
  local code, out = run.mw({ "script", d .. "/test_x.lua" }, { merge = true, timeout = 60 })
  return code, out
end

-- t.LEAK_WAIT = 1: a leak is seen at once, the drain wait only costs the leaky files time
local HEAD = 'local t = require "t"\nlocal core = require "mw.core"\nlocal net = require "mw.net"\nt.LEAK_WAIT = 1\n'

t.test("leak check: a clean file passes with its own counts", function()
  local code, out = test_file(HEAD .. [[
t.test("a task that ends, a listener closed", function()
  local l = assert(net.listen("127.0.0.1", 0))
  core.join(core.spawn(function() core.sleep(0.01) end))
  l:close()
end)
os.exit(t.run())
]])
  t.eq(code, 0, out)
  t.match(out, "\n# 1 passed, 0 failed, 0 skipped\n$")
  t.ok(not out:find("leak check", 1, true), out)
end)

t.test("leak check: a listener left open fails the file with one line counting its handles", function()
  local code, out = test_file(HEAD .. [[
local keep
t.test("opens a listener and keeps it", function() keep = assert(net.listen("127.0.0.1", 0)) end)
os.exit(t.run())
]])
  t.eq(code, 1, out)
  t.match(out, "\nFAIL leak check: (%d+) handle%(s%) still open after the cases %(handles %1, anchored %d+, tasks 1; "
    .. "at the start 0, %d+, 1%)\n", out)
  t.match(out, "\n# 1 passed, 1 failed, 0 skipped\n$")
end)

t.test("leak check: a task left running fails the file, counting its timer and anchors, naming the task", function()
  local code, out = test_file(HEAD .. [[
t.test("starts a task that sleeps past the end", function() core.spawn(function() core.sleep(3600) end, "sleeper") end)
os.exit(t.run())
]])
  t.eq(code, 1, out)
  t.match(out, "\nFAIL leak check: 1 handle%(s%) still open, %d+ reference%(s%) still anchored in the registry, "
    .. "1 task%(s%) still running after the cases %([^)]*%); running: mw%.task sleeper %(waiting%)\n", out)
  t.match(out, "\n# 1 passed, 1 failed, 0 skipped\n$")
end)

t.test("leak check: an after-hook that closes what the file kept open lets it pass, in order, once", function()
  local code, out = test_file(HEAD .. [[
local keep
t.after(function() print("after 1") keep:close() end)
t.after(function() print("after 2") end)
t.test("opens a listener", function() keep = assert(net.listen("127.0.0.1", 0)) end)
os.exit(t.run())
]])
  t.eq(code, 0, out)
  t.match(out, "\nafter 1\nafter 2\n# 1 passed, 0 failed, 0 skipped\n$")
end)

t.test("an after-hook that fails fails the file", function()
  local code, out = test_file(HEAD .. [[
t.after(function() error("hook broke") end)
t.test("fine", function() end)
os.exit(t.run())
]])
  t.eq(code, 1, out)
  t.match(out, "\nFAIL after the cases: [^\n]*hook broke")
  t.match(out, "\n# 1 passed, 1 failed, 0 skipped\n$")
end)

t.test("a server of tests/lib/httpd.lua kept across cases is stopped after them", function()
  local code, out = test_file(HEAD .. [[
local httpd = require "httpd"
local srv = httpd.start { ["/x"] = function() return 200, "x" end }
t.test("uses it", function() t.ok(srv.port > 0) end)
os.exit(t.run())
]])
  t.eq(code, 0, out)
  t.match(out, "\n# 1 passed, 0 failed, 0 skipped\n$")
end)

t.test("leak check: a finished task still referenced keeps its results anchored, and says so", function()
  local code, out = test_file(HEAD .. [[
local held
t.test("joins a task and keeps it", function() held = core.spawn(function() return {} end, "done"); core.join(held) end)
os.exit(t.run())
]])
  t.eq(code, 1, out)
  t.match(out, "\nFAIL leak check: 1 reference%(s%) still anchored in the registry after the cases %([^)]*%); "
    .. "anchored: table: 0x%x+\n", out)
end)

t.test("tmp: directories and files made by a file are gone when it ends, even when a case fails", function()
  local list = tmp.file()
  local code, out = test_file(HEAD .. string.format([[
local tmp = require "tmp"
local fs = require "mw.fs"
t.test("makes temp paths and fails", function()
  local d, f = tmp.dir(" with spaces"), tmp.file()
  assert(fs.write_atomic(d .. "/x", "x"))
  assert(fs.write_atomic(%q, d .. "\n" .. f .. "\n"))
  error("on purpose")
end)
os.exit(t.run())
]], list))
  t.eq(code, 1, out)
  t.match(out, "^FAIL makes temp paths and fails: [^\n]*on purpose")
  local d, f = (fs.read(list) or ""):match("^([^\n]+)\n([^\n]+)\n$")
  t.ok(d and f, "the child wrote its paths: " .. tostring(fs.read(list)))
  t.match(d, " with spaces$")
  t.eq(fs.stat(d), nil, d .. " removed")
  t.eq(fs.stat(f), nil, f .. " removed")
end)

t.test("run.mw: args, env, cwd and stdin reach the child; stdout and stderr come apart", function()
  local d = tmp.dir()
  assert(fs.write_atomic(d .. "/echo.lua", [[
io.stdout:write("args ", table.concat(arg, ","), "\n")
io.stdout:write("env ", tostring(os.getenv("I16_X")), " ", tostring(os.getenv("HOME")), "\n")
io.stdout:write("stdin ", io.stdin:read("a"), "\n")
io.stderr:write("to stderr\n")
return 3
]], 420))
  local code, out, err, secs = run.mw({ "script", d .. "/echo.lua", "a b", "c" },
    { env = { "I16_X=one", "HOME=/nowhere" }, stdin = "piped\nin" })
  t.eq(code, 3, err)
  t.eq(out, "args a b,c\nenv one /nowhere\nstdin piped\nin\n", "a name in env replaces the inherited one")
  t.eq(err, "to stderr\n")
  t.ok(type(secs) == "number" and secs >= 0, tostring(secs))
  -- cwd, an empty inherited set, and merged output
  code, out, err = run.program({ "/bin/sh", "-c", 'pwd; echo "home=${HOME-unset}" >&2' }, { cwd = d, inherit = {}, merge = true })
  t.eq(code, 0)
  t.eq(out, d .. "\nhome=unset\n")
  t.eq(err, "")
end)

t.test("run.program: a child past its deadline is killed and reported as \"timeout\"", function()
  local code, out = run.program({ "/bin/sh", "-c", "echo started; exec sleep 600" }, { timeout = 0.5 })
  t.eq(code, "timeout")
  t.eq(out, "started\n")
end)

os.exit(t.run())
