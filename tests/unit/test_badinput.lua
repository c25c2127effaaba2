-- Bad input from both sides: every malformed stack file in tests/bad/ through `mw check` and
-- some through `mw run` (exit 2, one line, nothing sent to the engine), and a fake engine on a
-- unix socket that answers garbage, truncated JSON and event streams with junk lines.
local t = require "t"
local core = require "mw.core"
local proc = require "mw.proc"
local net = require "mw.net"
local fs = require "mw.fs"
local cjson = require "cjson"
local tmp = require "tmp"
local run = require "run"

local MW = os.getenv("MW_BIN") or "./mw"
local ROOT = os.getenv("MW_LUA_PATH")
if not ROOT or ROOT == "" then ROOT = "." end

local tmpdir = tmp.dir

-- Runs mw to completion -> exit status, stdout, stderr (each captured to its own file).
local function mw(args, env, timeout)
  local code, out, err = run.mw(args, { env = env, timeout = timeout or 30 })
  return code, out, err
end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
  if s ~= "" and s:sub(-1) ~= "\n" then n = n + 1 end
  return n
end

local function no_traceback(s, what)
  t.ok(not s:find("stack traceback", 1, true), what .. ": a traceback: " .. s)
  t.ok(not s:find("mw: task .- failed"), what .. ": a task failed: " .. s)
end

---------------------------------------------------------------------------------------------
-- stack files

local bad_dir = ROOT == "." and "tests/bad" or (ROOT .. "/tests/bad")
local files = {}
for _, name in ipairs(assert(fs.list(bad_dir))) do
  if name:match("%.lua$") then files[#files + 1] = name end
end
table.sort(files)

t.test(string.format("mw check: each of the %d files in tests/bad/ exits 2 with one line, no traceback", #files), function()
  t.ok(#files >= 40, "at least 40 bad stack files (" .. #files .. ")")
  local failures = {}
  local slowest, slow_name = 0, nil
  for _, name in ipairs(files) do
    local path = bad_dir .. "/" .. name
    local t0 = core.now()
    local code, out, err = mw({ "check", path })
    local took = core.now() - t0
    if took > slowest then slowest, slow_name = took, name end
    local all = out .. err
    local why
    if code ~= 2 then why = "exit " .. tostring(code)
    elseif lines(all) ~= 1 then why = lines(all) .. " lines"
    elseif all:find("stack traceback", 1, true) or all:find("mw: task") then why = "traceback" end
    -- a file may say what its message should match on its first line: -- expect: PATTERN
    local src = fs.read(path) or ""
    local want = src:match("^%-%- expect: ([^\n]+)")
    if not why and want and not all:gsub("\n$", ""):find(want) then why = "message does not match " .. want end
    if why then failures[#failures + 1] = name .. ": " .. why .. ": " .. all:sub(1, 300) end
  end
  print(string.format("#   %d files, slowest %s in %.2fs", #files, tostring(slow_name), slowest))
  t.eq(#failures, 0, table.concat(failures, "\n"))
end)

-- Whether a real engine answers (the run half of the next test checks it saw nothing).
local function real_engine()
  local ok, docker = pcall(require, "mw.docker")
  if not ok then return nil end
  local e = docker.connect()
  return e
end

-- A few bad files copied to a directory whose name is the stack's default name.
local RUN_FILES = { "13-unknown-field.lua", "22-cycle.lua", "35-loop-forever.lua", "37-os-execute.lua",
                    "44-huge-table.lua", "47-non-utf8-field.lua", "21-unknown-dependency.lua" }

-- A fake engine: routes by path (version prefix and query removed); records every request.
-- A route returns status, body[, headers] or handles the connection itself (streams).
local function fake_engine(routes)
  local dir = tmpdir()
  local path = dir .. "/docker.sock"
  local srv = assert(net.listen("unix:" .. path))
  local f = { path = path, host = "unix://" .. path, seen = {}, conns = {}, handlers = {} }
  local function respond(c, status, body, headers)
    local h = { "HTTP/1.1 " .. status .. " Fake", "Content-Length: " .. #body, "Connection: close" }
    local hs = { ["Api-Version"] = "1.41" }
    for k, v in pairs(headers or {}) do hs[k] = v end
    for k, v in pairs(hs) do if v then h[#h + 1] = k .. ": " .. v end end
    c:write(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
  end
  f.task = core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      f.conns[#f.conns + 1] = c
      f.handlers[#f.handlers + 1] = core.spawn(function()
        local buf = ""
        while not buf:find("\r\n\r\n", 1, true) do
          local d = c:read(5)
          if not d then c:close() return end
          buf = buf .. d
        end
        local head = buf:sub(1, buf:find("\r\n\r\n", 1, true))
        local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength: *(%d+)")) or 0
        local body = buf:sub(buf:find("\r\n\r\n", 1, true) + 4)
        while #body < len do
          local d = c:read(5)
          if not d then break end
          body = body .. d
        end
        local method, target = head:match("^(%u+) (%S+)")
        local p = target:gsub("%?.*$", ""):gsub("^/v%d+%.%d+", "")
        f.seen[#f.seen + 1] = method .. " " .. target
        local route = routes[p] or routes[p:gsub("^/containers/[^/]+/json$", "/containers/ID/json")]
          or routes[p:gsub("^/images/.+/json$", "/images/NAME/json")]
        if route == nil then
          respond(c, 500, '{"message":"fake engine: no route for ' .. p .. '"}')
        else
          local status, rbody, headers = route({ method = method, target = target, path = p, body = body }, c)
          if status then respond(c, status, rbody or "", headers) else return end
        end
        core.sleep(0.005)
        c:close()
      end, "fake-engine-conn")
    end
  end, "fake-engine")
  function f.stop()
    srv:close()
    for _, c in ipairs(f.conns) do c:close() end
    for _, h in ipairs(f.handlers) do core.cancel(h) end    -- a stream's handler sleeps 60 s
    core.join(f.task)
  end
  return f
end

local PING = function() return 200, "OK", { ["Api-Version"] = "1.41", ["Ostype"] = "linux" } end
local VERSION = function() return 200, cjson.encode { Version = "20.10.0-fake", ApiVersion = "1.41", MinAPIVersion = "1.12" } end

t.test("mw run on bad stack files: exit 2, one line, and not one request to the engine", function()
  local d = tmpdir()
  local sdir = d .. "/badrun" .. core.pid()
  assert(fs.mkdirp(sdir, 448))
  local stack_name = ("badrun" .. core.pid()):lower()
  for _, name in ipairs(RUN_FILES) do
    assert(fs.write_atomic(sdir .. "/" .. name, assert(fs.read(bad_dir .. "/" .. name)), 420))
  end
  local fake = fake_engine { ["/_ping"] = PING, ["/version"] = VERSION }
  local engine = real_engine()
  local P = engine and require "faults.proxy"
  local px = engine and P.start { dir = tmpdir() }
  for _, name in ipairs(RUN_FILES) do
    local host = px and px.host or fake.host
    local code, out, err = mw({ "run", "--state-dir", d .. "/state", sdir .. "/" .. name }, { "DOCKER_HOST=" .. host })
    t.eq(code, 2, name .. ": " .. out .. err)
    t.eq(lines(out .. err), 1, name .. ": " .. out .. err)
    no_traceback(out .. err, name)
  end
  t.eq(#fake.seen, 0, "requests to the fake engine")
  fake.stop()
  if px then
    local s = px:stats()
    px:stop()
    t.eq(s.requests, 0, "requests through the proxy to the real engine")
    local cs = assert(engine:list { label = { "mw.stack=" .. stack_name } })
    local ns = assert(engine:network_list { label = { "mw.stack=" .. stack_name } })
    t.eq(#cs + #ns, 0, "containers and networks of the stack on the engine")
    print("#   checked through the fault proxy against the real engine too")
  end
  t.ok(not fs.stat(d .. "/state/" .. stack_name .. "/status.json"), "no status file")
end)

---------------------------------------------------------------------------------------------
-- garbage from the engine

local STACK = [[return { name = "fake", components = { a = { image = "busybox:fake", command = { "true" } } } }]]

local function stack_file()
  local d = tmpdir()
  assert(fs.write_atomic(d .. "/stack.lua", STACK, 420))
  return d .. "/stack.lua", d
end

local NET = function() return 200, '[{"Name":"mw-fake","Id":"n1","Labels":{"used-by":"millwright","mw.stack":"fake"}}]' end

-- scenario name, routes, what stderr must say
local GARBAGE = {
  { "a ping without Api-Version (not an engine)", { ["/_ping"] = function() return 200, "<html>hello</html>", { ["Api-Version"] = false } end },
    "does not look like a Docker engine" },
  { "garbage for /version", { ["/_ping"] = PING, ["/version"] = function() return 200, "\0\1\2garbage{" end },
    "." },
  { "truncated JSON for /version", { ["/_ping"] = PING, ["/version"] = function() return 200, '{"Version":"20.' end },
    "." },
  { "garbage for the network list", { ["/_ping"] = PING, ["/version"] = VERSION,
    ["/networks"] = function() return 200, "}{ not json" end }, "JSON" },
  { "truncated JSON for the container list", { ["/_ping"] = PING, ["/version"] = VERSION, ["/networks"] = NET,
    ["/containers/json"] = function() return 200, '[{"Id":"abc","Names":["/fake-a"],"Labels":{"mw.comp' end }, "JSON" },
  { "a list of non-objects for the container list", { ["/_ping"] = PING, ["/version"] = VERSION, ["/networks"] = NET,
    ["/containers/json"] = function() return 200, '[1, "x", null, true]' end }, "." },
  { "an object where the network list should be", { ["/_ping"] = PING, ["/version"] = VERSION,
    ["/networks"] = function() return 200, '{"message":"surprise"}' end,
    ["/networks/create"] = function() return 500, '{"message":"fake: no"}' end }, "." },
  { "a 200 with an HTML body for the container list", { ["/_ping"] = PING, ["/version"] = VERSION, ["/networks"] = NET,
    ["/containers/json"] = function() return 200, "<html><body>proxy error</body></html>" end }, "JSON" },
}

t.test("the engine's version from the ping's Server header: no GET /version (dockerd runs runc for it)", function()
  local docker = require "mw.docker"
  local asked = 0
  local server_ping = function()
    return 200, "OK", { ["Api-Version"] = "1.41", ["Server"] = "Docker/20.10.24+dfsg1 (linux)" }
  end
  local fake = fake_engine { ["/_ping"] = server_ping, ["/version"] = function() asked = asked + 1 return VERSION() end }
  local e, err = docker.connect { host = fake.host }
  t.ok(e, err)
  t.eq(e.version, "20.10.24+dfsg1")
  t.eq(asked, 0, "GET /version")
  fake.stop()
  -- an engine that does not say (Podman's "Libpod/…", a stand-in): asked once
  fake = fake_engine { ["/_ping"] = PING, ["/version"] = function() asked = asked + 1 return VERSION() end }
  e, err = docker.connect { host = fake.host }
  t.ok(e, err)
  t.eq(e.version, "20.10.0-fake")
  t.eq(asked, 1, "GET /version")
  fake.stop()
end)

for _, case in ipairs(GARBAGE) do
  local what, routes, want = case[1], case[2], case[3]
  t.test("engine sends " .. what .. ": mw says one line and exits 1", function()
    local fake = fake_engine(routes)
    local file, d = stack_file()
    local code, out, err = mw({ "run", "--state-dir", d .. "/state", file }, { "DOCKER_HOST=" .. fake.host }, 30)
    fake.stop()
    no_traceback(out .. err, what)
    t.eq(code, 1, what .. ": exit; stdout " .. out .. "; stderr " .. err)
    t.eq(lines(err), 1, what .. ": stderr lines: " .. err)
    t.match(err, "^mw: ", what)
    t.match(err, want, what)
    t.ok(#err < 600, what .. ": a short line (" .. #err .. " bytes)")
  end)
end

local function junk_case(junk) return function()
  local stack = require "mw.stack"
  local spec = require "mw.spec"
  local file, d = stack_file()
  local s = assert(stack.load(file))
  local IMG = "sha256:" .. string.rep("f", 64)
  local _, hash, hold = spec.container(s, s.components.a, IMG)
  local CID, HID = string.rep("c", 64), string.rep("d", 64)
  local labels = { ["used-by"] = "millwright", ["mw.stack"] = "fake", ["mw.component"] = "a", ["mw.config-hash"] = hash }
  -- a held component (mw.holder): its running network holder is adopted with it
  local hlabels = { ["used-by"] = "millwright", ["mw.stack"] = "fake", ["mw.holder"] = "a", ["mw.holder-hash"] = hold.hash }
  local sent = {}
  local fake = fake_engine {
    ["/_ping"] = PING, ["/version"] = VERSION, ["/networks"] = NET,
    ["/containers/json"] = function()
      return 200, cjson.encode { { Id = CID, Names = { "/fake-a" }, State = "running", Labels = labels,
                                   HostConfig = { NetworkMode = "container:" .. HID } },
                                 { Id = HID, Names = { "/fake-a.net" }, State = "running", Labels = hlabels } }
    end,
    ["/images/NAME/json"] = function() return 200, cjson.encode { Id = IMG } end,
    ["/containers/ID/json"] = function()
      return 200, cjson.encode { Id = CID, Name = "/fake-a", State = { Status = "running", Pid = 0,
        StartedAt = "2026-01-01T00:00:00.000000000Z" }, Config = { Labels = labels },
        NetworkSettings = { Networks = { ["mw-fake"] = { NetworkID = "n1" } }, Ports = {} } }
    end,
    ["/events"] = function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nConnection: close\r\n\r\n")
      if not req.target:find("container", 1, true) then
        core.sleep(60)           -- the network stream: quiet
        return nil
      end
      if sent.done then core.sleep(60) return nil end
      sent.done = true
      core.sleep(0.3)
      for _, j in ipairs(junk) do c:write(j) core.sleep(0.01) end
      local now = math.floor(core.time())
      local attrs = {}
      for k, v in pairs(labels) do attrs[k] = v end
      attrs.exitCode = "7"
      attrs.name = "fake-a"
      c:write(cjson.encode { Type = "container", Action = "die", status = "die", id = CID,
        Actor = { ID = CID, Attributes = attrs }, time = now, timeNano = now * 1000000000 } .. "\n")
      sent.die = core.now()
      core.sleep(60)
      return nil
    end,
  }
  local out = d .. "/mw.log"
  local p = assert(proc.spawn { args = { MW, "run", "--log-format", "json", "--state-dir", d .. "/state", file },
    env = run.env({ "DOCKER_HOST=" .. fake.host }), out = out })
  local function events()
    local list = {}
    for line in (fs.read(out) or ""):gmatch("[^\n]+") do
      local ok, ev = pcall(cjson.decode, line)
      if ok and type(ev) == "table" then list[#list + 1] = ev end
    end
    return list
  end
  local failed
  local ok, err = pcall(t.wait_for, function()
    for _, ev in ipairs(events()) do
      if ev.event == "failed" and ev.component == "a" then failed = ev return true end
    end
    if p:wait(0) then error("mw exited: " .. (fs.read(out) or "")) end
  end, 20, "the die event after the junk")
  local running = p:wait(0) == nil
  p:kill("TERM")
  local code = p:wait(10)
  if not code then p:kill("KILL") p:wait(5) end
  p:close()
  fake.stop()
  local text = fs.read(out) or ""
  if not ok then error(tostring(err) .. "\n" .. text, 0) end
  t.ok(running, "mw kept running after the junk")
  t.eq(failed.exit_code, 7, "the exit code of the die event after the junk")
  no_traceback(text, "junk events")
  local adopted = false
  for _, ev in ipairs(events()) do if ev.event == "adopted" then adopted = true end end
  t.ok(adopted, "the fake container was adopted")
  t.eq(code, 0, "exit on TERM")
end end

t.test("an event stream with junk lines: mw skips them, keeps running, and acts on the real event after",
  junk_case { "garbage\n", "{\"Type\":\"container\",\"Action\":\n", "\0\1\2\255\254\n", "[1,2,3]\n",
              "null\n", "\"a string\"\n", string.rep("x", 100000) .. "\n", "{}\n", "\r\n", "42\n",
              "{\"Actor\":{\"Attributes\":\"x\",\"ID\":[]}}\n", "{\"Type\":\"container\",\"timeNano\":\"x\"}\n" })
t.test("events that are JSON objects of the wrong shape ({\"Actor\":5}): skipped like junk",
  junk_case { "{\"Actor\":5}\n", "{\"Actor\":\"me\"}\n", "{\"Actor\":true}\n" })

os.exit(t.run())
