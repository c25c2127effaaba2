-- Paths and files a stack file names (issue 15, part 3): a FIFO, a device or a symlink to one
-- where mw reads a file (a helper .lua, the stack file, a Dockerfile, .dockerignore) or hands a
-- file on (a secret, a bind source) is refused with one line and exit 2, never waited on; a
-- helper, a secret and a .dockerignore have a size cap; a unix socket is a valid bind source;
-- fs.write_atomic never writes through a link planted at its temp name. The attack files are
-- made at run time (FIFOs, sockets and links cannot live in the repository), and each mw runs
-- as a child with a deadline, so a hang fails the case instead of the run.
local t = require "t"
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"
local tar = require "mw.tar"
local tmp = require "tmp"
local run = require "run"

local DEADLINE = 20     -- seconds: far past any honest answer, yet a hang cannot stall the run

local tmpdir = tmp.dir

local function sh(cmd) assert(os.execute(cmd), cmd) end

-- Runs mw to completion -> exit status ("timeout" past the deadline), stdout, stderr.
local function mw(args)
  local code, out, err = run.mw(args, { timeout = DEADLINE })
  return code, out, err
end

-- A Lua snippet run by `mw script` in a child -> exit status, output (stdout and stderr).
local function script(src)
  local d = tmpdir()
  assert(fs.write_atomic(d .. "/s.lua", src, 420))
  local code, out, err = mw { "script", d .. "/s.lua" }
  return code, out .. err
end

-- Writes a stack whose one component has the given fields -> stack file path, its directory.
local function stack(fields, d)
  d = d or tmpdir()
  local path = d .. "/stack.lua"
  assert(fs.write_atomic(path, "return { name = \"paths\", components = { a = { " .. fields .. " } } }\n", 420))
  return path, d
end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- mw check on a stack -> refused with exit 2 and one line matching each pattern.
local function refused(path, ...)
  local code, out, err = mw { "check", path }
  local all = out .. err
  t.eq(code, 2, "exit of mw check: " .. all)
  t.eq(lines(all), 1, "lines: " .. all)
  t.ok(not all:find("traceback", 1, true), "a traceback: " .. all)
  for _, pat in ipairs { ... } do t.match(all, pat) end
  return all
end

local function big(path, n)
  sh(string.format("head -c %d /dev/zero | tr '\\0' '-' > '%s'", n, path))
end

---------------------------------------------------------------------------------------------
-- files mw reads

t.test("a helper .lua that is a FIFO: refused, naming the file (was: mw check hung)", function()
  local path, d = stack('image = "x", command = { require "helper" }')
  sh("mkfifo '" .. d .. "/helper.lua'")
  refused(path, "helper%.lua", "FIFO")
end)

t.test("a helper .lua linked to /dev/zero: refused as a device, nothing read", function()
  local path, d = stack('image = "x", command = { require "helper" }')
  sh("ln -s /dev/zero '" .. d .. "/helper.lua'")
  refused(path, "helper%.lua", "character device")
end)

t.test("a helper .lua over 1 MiB: refused", function()
  local path, d = stack('image = "x", command = { require "helper" }')
  big(d .. "/helper.lua", 1024 * 1024 + 1)
  refused(path, "helper%.lua is larger than 1 MiB")
end)

t.test("a helper .lua of exactly 1 MiB still loads", function()
  local path, d = stack('image = "x", command = { require "helper" }')
  local f = assert(io.open(d .. "/helper.lua", "wb"))
  f:write("return 'true'", string.rep(" ", 1024 * 1024 - 13))
  f:close()
  local code, out, err = mw { "check", path }
  t.eq(code, 0, out .. err)
end)

t.test("the stack file itself a FIFO: refused (was: mw check hung)", function()
  local d = tmpdir()
  sh("mkfifo '" .. d .. "/stack.lua'")
  refused(d .. "/stack.lua", "stack%.lua: is a FIFO, not a stack file")
end)

t.test("a Dockerfile that is a FIFO: refused with component and field (was: mw check hung)", function()
  local path, d = stack('build = { context = "./ctx" }')
  assert(fs.mkdirp(d .. "/ctx", 448))
  sh("mkfifo '" .. d .. "/ctx/Dockerfile'")
  refused(path, "component 'a'", "build%.dockerfile", "FIFO, not a regular file")
end)

t.test("a .dockerignore linked to /dev/zero or a FIFO: mw check refuses it", function()
  for _, make in ipairs { "ln -s /dev/zero", "mkfifo" } do
    local path, d = stack('build = "./ctx"')
    assert(fs.mkdirp(d .. "/ctx", 448))
    assert(fs.write_atomic(d .. "/ctx/Dockerfile", "FROM scratch\n", 420))
    sh(make:gsub("mkfifo", "mkfifo ") .. " '" .. d .. "/ctx/.dockerignore'")
    refused(path, "component 'a'", "build%.context", "%.dockerignore", make == "mkfifo" and "FIFO" or "symbolic link")
  end
end)

t.test("a .dockerignore over 1 MiB: mw check refuses it", function()
  local path, d = stack('build = "./ctx"')
  assert(fs.mkdirp(d .. "/ctx", 448))
  assert(fs.write_atomic(d .. "/ctx/Dockerfile", "FROM scratch\n", 420))
  big(d .. "/ctx/.dockerignore", 1024 * 1024 + 1)
  refused(path, "%.dockerignore in build context \"%./ctx\" is larger than 1 MiB")
end)

-- What the build itself reads (the file may change after mw check): tar.pack, in a child so
-- that reading /dev/zero without end, as before, fails the case instead of eating the machine.
t.test("tar.pack: a .dockerignore that is a link (to /dev/zero), a FIFO or over 1 MiB fails the pack", function()
  local cases = {
    { "ln -s /dev/zero", "symbolic link" },
    { "mkfifo", "not a regular file" },
    { "big", "larger than 1 MiB" },
  }
  for _, c in ipairs(cases) do
    local d = tmpdir()
    assert(fs.write_atomic(d .. "/Dockerfile", "FROM scratch\n", 420))
    if c[1] == "big" then big(d .. "/.dockerignore", 1024 * 1024 + 1)
    else sh(c[1] .. " '" .. d .. "/.dockerignore'") end
    local code, out = script(string.format([[
      local ctx, err = require("mw.tar").pack(%q)
      io.stdout:write(ctx and "packed " .. #ctx or "failed: " .. err, "\n")
    ]], d))
    t.eq(code, 0, c[1] .. ": " .. out)
    t.match(out, "^failed: .*%.dockerignore: .*" .. c[2], c[1])
  end
  -- a plain one still works
  local d = tmpdir()
  assert(fs.write_atomic(d .. "/.dockerignore", "skip\n", 420))
  assert(fs.write_atomic(d .. "/skip", "x", 420))
  assert(fs.write_atomic(d .. "/keep", "y", 420))
  local ctx = assert(tar.pack(d))
  t.ok(ctx:find("keep", 1, true) and not ctx:find("skip\0", 1, true), "the ignore file applies")
end)

t.test("fs.read: a FIFO, a device and a directory are refused at once; max bounds a file", function()
  local d = tmpdir()
  sh("mkfifo '" .. d .. "/fifo'")
  local code, out = script(string.format([[
    local fs = require "mw.fs"
    for _, p in ipairs { %q, "/dev/zero", %q } do
      local v, err, ecode = fs.read(p)
      io.stdout:write(tostring(v), " ", tostring(ecode), " ", tostring(err), "\n")
    end
  ]], d .. "/fifo", d))
  t.eq(code, 0, out)
  t.match(out, "nil EINVAL [^\n]*fifo: not a regular file %(a FIFO%)")
  t.match(out, "nil EINVAL [^\n]*/dev/zero: not a regular file %(a character device%)")
  t.match(out, "nil EINVAL [^\n]*not a regular file %(a directory%)")
  assert(fs.write_atomic(d .. "/f", "12345", 420))
  t.eq(fs.read(d .. "/f", 5), "12345")
  local v, err, ecode = fs.read(d .. "/f", 4)
  t.eq(v, nil)
  t.eq(ecode, "EFBIG", err)
end)

---------------------------------------------------------------------------------------------
-- files mw hands on to the engine

t.test("a secret file that is a FIFO or a device: refused (was: mw check hung)", function()
  local path, d = stack('image = "x", secrets = { k = "./fifo", z = "/dev/zero" }')
  sh("mkfifo '" .. d .. "/fifo'")
  refused(path, "component 'a'", "secrets%.k", "secret file \"%./fifo\" is a FIFO, not a regular file")
  path = stack('image = "x", secrets = { z = "/dev/zero" }', d)
  refused(path, "secrets%.z", "character device")
end)

t.test("a secret file over 1 MiB: refused; of 1 MiB: accepted", function()
  local path, d = stack('image = "x", secrets = { k = "./key" }')
  big(d .. "/key", 1024 * 1024 + 1)
  refused(path, "secrets%.k", "larger than 1 MiB")
  big(d .. "/key", 1024 * 1024)
  local code, out, err = mw { "check", path }
  t.eq(code, 0, out .. err)
  t.ok(not (out .. err):find("%-%-%-%-"), "the secret's content is not printed")
end)

t.test("a bind source that is a FIFO or a device: refused (was: mw check hung)", function()
  local path, d = stack('image = "x", volumes = { "./fifo:/x" }')
  sh("mkfifo '" .. d .. "/fifo'")
  refused(path, "component 'a'", "volumes%[1%]", "bind mount source \"%./fifo\" is a FIFO")
  path = stack('image = "x", volumes = { "/dev/null:/x" }', d)
  refused(path, "volumes%[1%]", "character device")
end)

t.test("a unix socket is a valid bind source (was: \"does not exist\")", function()
  local d = tmpdir()
  local srv = assert(net.listen("unix:" .. d .. "/docker.sock"))
  local path = stack('image = "x", volumes = { "./docker.sock:/var/run/docker.sock" }', d)
  local code, out, err = mw { "check", path }
  srv:close()
  t.eq(code, 0, out .. err)
  t.match(out, "docker%.sock:/var/run/docker%.sock")
end)

---------------------------------------------------------------------------------------------
-- files mw writes

t.test("fs.write_atomic never writes through a link planted at the old predictable temp name", function()
  local d = tmpdir()
  local victim, target = d .. "/victim", d .. "/status.json"
  assert(fs.write_atomic(victim, "precious", 384))
  -- the name the old code used: <path>.tmp.<pid>
  sh(string.format("ln -s '%s' '%s.tmp.%d'", victim, target, core.pid()))
  assert(fs.write_atomic(target, "new", 384))
  t.eq(fs.read(victim), "precious", "the link's target is untouched")
  t.eq(fs.read(target), "new")
  t.eq(fs.stat(target).type, "file", "the file itself, not a link")
  t.eq(fs.stat(target .. ".tmp." .. core.pid()).type, "link", "the planted link is left alone")
  -- no temp file is left behind
  local names = assert(fs.list(d))
  t.eq(#names, 3, table.concat(names, " "))
end)

t.test("fs.write_atomic: each write uses a fresh name, so two writers of one path never share it", function()
  local d = tmpdir()
  for i = 1, 50 do assert(fs.write_atomic(d .. "/f", tostring(i), 384)) end
  t.eq(fs.read(d .. "/f"), "50")
  t.eq(#assert(fs.list(d)), 1)
end)

os.exit(t.run())
