-- Security properties against the real engine: heartbeat ports on 127.0.0.1 only, destroy
-- never touches what mw did not label, private state and queue files, a sandbox that cannot
-- run programs or write files, and secrets that never show in what mw prints or writes.
local t = require "t"
local fs = require "mw.fs"
local cjson = require "cjson"
local E = require "engine"

local e = E.engine()

local HTTPD = [[{ "sh", "-c", "mkdir -p /w/debug && echo '{}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" }]]

local function mode(path)
  local st = fs.stat(path)
  return st and st.mode, st and st.type
end

local function octal(m) return m and string.format("%o", m) or "missing" end

---------------------------------------------------------------------------------------------

t.test("heartbeat ports are published on 127.0.0.1 only; state and queue files are private", function()
  local file, stack = E.stack("ports", [[
return { name = "NAME", components = {
  web = { image = "IMAGE", command = ]] .. HTTPD .. [[, heartbeat = { interval = "200ms", grace = "20s" } },
  tcp = { image = "IMAGE", command = ]] .. HTTPD .. [[, heartbeat = { tcp = 8089, interval = "200ms", grace = "20s" } },
} }
]])
  local state = E.tmpdir() .. "/state"          -- missing: mw creates it
  -- the published path: what it publishes is on 127.0.0.1 only (the netns path publishes nothing)
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file }, { env = { "MW_HEARTBEAT_PATH=published" } })
  h.wait_event({ event = "healthy", component = "web" }, 60)
  h.wait_event({ event = "healthy", component = "tcp" }, 60)
  local by = E.wait_running(stack, { "web", "tcp" })
  local seen = 0
  for _, comp in ipairs { "web", "tcp" } do
    -- what is published is its network holder's (mw.holder)
    local info = E.net_of(assert(e:inspect(by[comp][1].Id)))
    for port, binds in pairs(info.HostConfig.PortBindings or {}) do
      for _, b in ipairs(binds) do
        t.eq(b.HostIp, "127.0.0.1", comp .. " PortBindings " .. port)
        seen = seen + 1
      end
    end
    for port, binds in pairs(info.NetworkSettings.Ports or {}) do
      for _, b in ipairs(binds or {}) do
        t.eq(b.HostIp, "127.0.0.1", comp .. " NetworkSettings.Ports " .. port)
        t.ok(tonumber(b.HostPort), comp .. " has a host port")
      end
    end
    t.ok(info.NetworkSettings.Ports["8089/tcp"], comp .. ": the heartbeat port is published")
  end
  t.ok(seen >= 2, "port bindings seen: " .. seen)

  -- the state: directories 0700, regular files 0600 (status.json, wait files, .seq)
  t.wait_for(function() return fs.stat(state .. "/" .. stack .. "/status.json") end, 10, "status.json")
  local report, wrong = {}, {}
  local function walk(dir)
    local m = mode(dir)
    report[#report + 1] = dir:sub(#state + 1) .. "/ " .. octal(m)
    if m ~= 448 then wrong[#wrong + 1] = dir .. " is " .. octal(m) end
    for _, name in ipairs(fs.list(dir) or {}) do
      local p = dir .. "/" .. name
      local pm, kind = mode(p)
      if kind == "dir" then walk(p)
      elseif kind == "file" then
        report[#report + 1] = p:sub(#state + 1) .. " " .. octal(pm)
        if pm ~= 384 then wrong[#wrong + 1] = p .. " is " .. octal(pm) end
      elseif kind then
        report[#report + 1] = p:sub(#state + 1) .. " (" .. kind .. ") " .. octal(pm)
      end
    end
  end
  walk(state)
  print("#   " .. table.concat(report, ", "))
  t.eq(#wrong, 0, table.concat(wrong, "; "))
  t.eq(h.stop(), 0)
end)

---------------------------------------------------------------------------------------------

t.test("destroy removes the stack's labelled resources and nothing unlabelled", function()
  local file, stack = E.stack("destroy", [[
return { name = "NAME", components = { web = { image = "IMAGE", command = { "sh", "-c", "exec sleep 100000" } } } }
]])
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), file })
  h.wait_event({ event = "started", component = "web" }, 60)
  t.eq(h.stop(), 0)
  local img = E.image()
  local body = { Image = img, Cmd = { "sleep", "100000" }, HostConfig = { RestartPolicy = { Name = "no" } } }
  -- impostors: named like the stack's, or labelled with the stack but not used-by=millwright
  local mine = {}
  local function ctr(name, labels)
    local b = {}
    for k, v in pairs(body) do b[k] = v end
    b.Labels = labels
    local id = assert(e:create(name, b))
    mine[#mine + 1] = id
    assert(e:start(id))          -- running: a prune elsewhere on the engine leaves it alone
    return id
  end
  -- the test image carries used-by=millwright (E.image labels it) and containers inherit their
  -- image's labels: an empty used-by here stands for "not labelled by mw"
  local c1 = ctr(stack .. "-extra", { ["used-by"] = "" })
  local c2 = ctr(stack .. "-impostor", { ["used-by"] = "", ["mw.stack"] = stack, ["mw.component"] = "web" })
  local c3 = ctr(stack .. "-other-owner", { ["used-by"] = "someone-else", ["mw.stack"] = stack })
  local n1 = assert(e:network_create("mw-" .. stack .. "-x", {}))
  local n2 = assert(e:network_create(stack .. "-net", { ["mw.stack"] = stack }))
  local v1 = assert(e:volume_create(stack .. "_data", { ["mw.stack"] = stack }))
  local ok, err = pcall(function()
    local code, out = E.mw_sync({ "destroy", "--stack", stack, "--volumes" })
    t.eq(code, 0, "destroy: " .. out)
    t.eq(#(E.containers(stack).web or {}), 0, "the stack's own container was removed")
    local nets = e:network_list { label = { "used-by=millwright", "mw.stack=" .. stack } }
    t.eq(#nets, 0, "the stack's own network was removed")
    for _, id in ipairs { c1, c2, c3 } do
      local info, ierr = e:inspect(id)
      t.ok(info, "unlabelled container " .. id:sub(1, 12) .. " is still there: " .. tostring(ierr) .. "; destroy said: " .. out)
    end
    t.ok(e:network_inspect(n1), "unlabelled network is still there")
    t.ok(e:network_inspect(n2), "network without used-by is still there")
    t.ok(e:volume_inspect(v1), "volume without used-by is still there")
    t.ok(not out:find("extra") and not out:find("impostor") and not out:find("other%-owner"), "destroy named none of them: " .. out)
  end)
  for _, id in ipairs(mine) do e:remove(id, { force = true }) end
  e:network_remove(n1)
  e:network_remove(n2)
  e:volume_remove(v1, true)
  if not ok then error(err, 0) end
end)

-- A container a user runs by hand from an image mw built inherits the image's labels
-- (used-by=millwright, mw.stack=S), so it looks like mw's own to destroy.
local function inherited_case()
  local file, stack = E.stack("inherit", [[
return { name = "NAME", components = { web = { build = { context = "." }, command = { "sh", "-c", "exec sleep 100000" } } } }
]])
  local d = file:match("^(.*)/")
  assert(os.execute("cp /bin/busybox " .. d .. "/busybox"))
  assert(fs.write_atomic(d .. "/Dockerfile", 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n', 420))
  local h = E.mw({ "run", "--log-format", "json", "--state-dir", E.tmpdir(), file })
  h.wait_event({ event = "started", component = "web" }, 120)
  t.eq(h.stop(), 0)
  local img = assert(e:inspect(E.containers(stack).web[1].Id)).Image
  local id = assert(e:create(stack .. "-by-hand", { Image = img, Cmd = { "sleep", "100000" } }))
  assert(e:start(id))
  local code, out = E.mw_sync({ "destroy", "--stack", stack })
  local still = e:inspect(id)
  e:remove(id, { force = true })
  t.eq(code, 0, out)
  t.ok(still, "destroy removed a container mw did not create: " .. out)
end
t.test("destroy leaves alone a container run by hand from an image mw built", inherited_case)

---------------------------------------------------------------------------------------------

-- Each stack file tries to reach the host; MARK is replaced by a path that must not appear.
local ESCAPES = {
  { "os.execute", [[os.execute("touch MARK")]] },
  { "io.open for writing", [[local f = io.open("MARK", "w") f:write("x") f:close()]] },
  { "io.popen", [[io.popen("touch MARK")]] },
  { "io.output", [[io.output("MARK")]] },
  { "load of bytecode", [[local f = load(string.dump(function() return 1 end)) f()]] },
  { "load in binary mode", [[load("\27Lua", "x", "b")]] },
  { "debug.getregistry", [[local r = debug.getregistry()]] },
  { "debug through a pcall", [[pcall(function() debug.sethook() end) error("still here")]] },
  { "package.loadlib", [[package.loadlib("libc.so.6", "system")("touch MARK")]] },
  { "require of the engine client", [[local d = require "mw.docker"]] },
  { "require of the process module", [[local p = require "mw.proc" p.spawn { args = { "/bin/touch", "MARK" } }]] },
  { "require of the fs module", [[local fs = require "mw.fs" fs.write_atomic("MARK", "x")]] },
  { "require of the core", [[local c = require "mw.core" c.exit(0)]] },
  { "dofile", [[dofile("/etc/passwd")]] },
  { "loadfile", [[loadfile("/etc/passwd")]] },
  { "the string metatable", [[getmetatable("").__index.rep = nil]] },
  { "rawget of _G for os", [[local g = _G or _ENV; local o = rawget(g, "os"); o.execute("touch MARK")]] },
  { "collectgarbage", [[collectgarbage("stop")]] },
  { "os.remove", [[os.remove("MARK")]] },
  { "os.exit", [[os.exit(0)]] },
  { "a coroutine escaping the sandbox", [[local co = coroutine.wrap(function() os.execute("touch MARK") end) co()]] },
}

t.test(string.format("the stack sandbox: %d attempts to run programs or write files exit 2 and create nothing", #ESCAPES),
  function()
  local d = E.tmpdir()
  local fails = {}
  for i, case in ipairs(ESCAPES) do
    local mark = d .. "/escaped-" .. i
    local src = case[2]:gsub("MARK", mark) .. '\nreturn { name = "sandbox", components = { a = { image = "x" } } }\n'
    local path = d .. "/s" .. i .. ".lua"
    assert(fs.write_atomic(path, src, 420))
    local code, out = E.mw_sync({ "check", path }, { timeout = 20 })
    local _, lines = out:gsub("\n", "")
    if code ~= 2 then fails[#fails + 1] = case[1] .. ": exit " .. tostring(code) .. ": " .. out end
    if lines ~= 1 then fails[#fails + 1] = case[1] .. ": " .. lines .. " lines: " .. out end
    if out:find("traceback") then fails[#fails + 1] = case[1] .. ": traceback" end
    if fs.stat(mark) then fails[#fails + 1] = case[1] .. ": created " .. mark end
  end
  -- and through mw run (before any engine call)
  for _, i in ipairs { 1, 2, 12 } do
    local mark = d .. "/escaped-" .. i
    local code = E.mw_sync({ "run", "--state-dir", d .. "/state", d .. "/s" .. i .. ".lua" }, { timeout = 20 })
    if code ~= 2 then fails[#fails + 1] = "run " .. ESCAPES[i][1] .. ": exit " .. tostring(code) end
    if fs.stat(mark) then fails[#fails + 1] = "run " .. ESCAPES[i][1] .. ": created " .. mark end
  end
  t.eq(#fails, 0, table.concat(fails, "\n"))
end)

---------------------------------------------------------------------------------------------

local function has_secret_module()
  local ok = pcall(function()
    local sb = require "mw.sandbox"
    local env = sb.env("/nonexistent")
    assert(env.require("mw.secret"))
  end)
  return ok
end

if not has_secret_module() then
  t.skip("secrets never appear in logs, status, errors or mw check", "stdlib has no mw.secret helper yet")
else
  t.test("secrets never appear in logs, status, errors or mw check", function()
    local v1 = "s3cret-" .. E.run_id .. "-literal"
    local v2 = "s3cret-" .. E.run_id .. "-fromenv"
    local file, stack, dir = E.stack("secret", [[
local secret = require "mw.secret"
return { name = "NAME", components = {
  web = { image = "IMAGE", command = ]] .. HTTPD .. [[, heartbeat = { interval = "200ms", grace = "20s" },
          env = { DB_PASSWORD = secret "]] .. v1 .. [[", API_KEY = secret.env "MW_TEST_SECRET", PLAIN = "visible" } },
  crash = { image = "IMAGE", command = { "sh", "-c", "exit 3" }, env = { TOKEN = secret "]] .. v1 .. [[" },
            restart = require("mw.policy").on_failure { limit = { restarts = 1, within = "1m" } } },
} }
]])
    local env = { "MW_TEST_SECRET=" .. v2 }
    local function clean(what, text)
      t.ok(not text:find(v1, 1, true), what .. " shows the literal secret")
      t.ok(not text:find(v2, 1, true), what .. " shows the secret from the environment")
    end
    -- mw check: the plan
    local code, out = E.mw_sync({ "check", file }, { env = env })
    t.eq(code, 0, out)
    clean("mw check", out)
    -- errors: a validation error in a component holding secrets, a secret where a string must be
    local bad = dir .. "/bad.lua"
    assert(fs.write_atomic(bad, [[
local secret = require "mw.secret"
return { name = "x", components = { a = { image = "x", env = { S = secret "]] .. v1 .. [[", B = {} } } } }
]], 420))
    code, out = E.mw_sync({ "check", bad })
    t.eq(code, 2, out)
    clean("a validation error", out)
    assert(fs.write_atomic(bad, [[
local secret = require "mw.secret"
return { name = "x", components = { a = { image = "x", command = { "echo", secret "]] .. v1 .. [[" } } } }
]], 420))
    code, out = E.mw_sync({ "check", bad })
    t.eq(code, 2, out)
    t.match(out, "field 'command%[2%]': a secret is accepted only as an env value")
    clean("a secret used as a command word", out)
    assert(fs.write_atomic(bad, [[
local secret = require "mw.secret"
error("failed with " .. tostring(secret "]] .. v1 .. [["))
]], 420))
    code, out = E.mw_sync({ "check", bad })
    t.eq(code, 2, out)
    clean("an error message built from a secret", out)
    -- a run: logs (text and JSON), the status file, mw status, a reload that fails
    local state = E.tmpdir()
    local h = E.mw({ "run", "--log-format", "json", "--state-dir", state, file }, { env = env })
    h.wait_event({ event = "healthy", component = "web" }, 60)
    h.wait_event({ event = "gave_up", component = "crash" }, 60)
    local by = E.wait_running(stack, { "web" })
    local info = assert(e:inspect(by.web[1].Id))
    local envs = table.concat(info.Config.Env or {}, "\n")
    t.ok(envs:find("DB_PASSWORD=" .. v1, 1, true), "the container gets the secret")
    t.ok(envs:find("API_KEY=" .. v2, 1, true), "the container gets the secret from mw's environment")
    clean("the container's labels", cjson.encode(info.Config.Labels or {}))
    local src = assert(fs.read(file))
    assert(fs.write_atomic(file, src:gsub("PLAIN = \"visible\"", "PLAIN = {}"), 420))
    h.wait_event({ event = "reload_failed" }, 20)
    assert(fs.write_atomic(file, src, 420))
    local st = fs.read(state .. "/" .. stack .. "/status.json") or ""
    t.ok(#st > 0, "a status file")
    clean("status.json", st)
    local scode, sout = E.mw_sync({ "status", "--stack", stack, "--json", "--state-dir", state })
    clean("mw status --json", sout .. tostring(scode))
    local tcode, tout = E.mw_sync({ "status", "--stack", stack, "--state-dir", state })
    clean("mw status", tout .. tostring(tcode))
    h.stop()
    clean("mw run's JSON log", h.text())
    local h2 = E.mw({ "run", "--state-dir", state, file }, { env = env })
    t.wait_for(function() return h2.text():find("healthy") end, 30, "healthy in the text log")
    h2.stop()
    clean("mw run's text log", h2.text())
  end)
end

os.exit(E.run(t))
