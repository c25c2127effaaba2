-- Helpers for tests against the real engine: a per-run id, a busybox test image, stack files in
-- temp dirs, mw processes with JSON logs to poll, and cleanup by label that runs even on failure
-- (registered with t.after, so it runs at the end of every test file that requires this one).
local core = require "mw.core"
local proc = require "mw.proc"
local fs = require "mw.fs"
local tar = require "mw.tar"
local cjson = require "cjson"
local docker = require "mw.docker"
local tmp = require "tmp"
local run = require "run"

local E = {}

E.run_id = string.format("t%x%x", core.pid(), math.floor(core.time() * 1000) % 0xfffff)
E.stacks = {}
E.labels = { "millwright" }   -- the installations (used-by=<label>) a test made things for
E.procs = {}

local engine
function E.engine()
  if not engine then engine = assert(docker.connect()) end
  return engine
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok
end

E.tmpdir = tmp.dir

-- The busybox image every test component runs (FROM scratch + Debian's static busybox).
local image
function E.image()
  if image then return image end
  local d = E.tmpdir()
  assert(sh("cp /bin/busybox " .. d .. "/busybox"))
  local f = assert(io.open(d .. "/Dockerfile", "w"))
  f:write('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n')
  f:close()
  local ctx = assert(tar.pack(d))
  local tag = "mw-test-" .. E.run_id .. ":busybox"
  local id, err = E.engine():build { context_tar = ctx, tag = tag,
    labels = { ["used-by"] = "millwright", ["mw.test"] = E.run_id } }
  assert(id, err)
  image = tag
  return image
end

-- The busybox image with kahttpd (tests/bench/kahttpd.c, `make build/kahttpd`) beside it: an
-- HTTP endpoint that keeps connections, as nginx or Go's net/http do, and counts them.
local ka_image
function E.kahttpd_image()
  if ka_image then return ka_image end
  local bin = fs.read("build/kahttpd")
  assert(bin, "no build/kahttpd (make build/kahttpd; make test builds it)")
  local d = E.tmpdir()
  assert(fs.write_atomic(d .. "/kahttpd", bin, 493))
  assert(fs.write_atomic(d .. "/Dockerfile", "FROM " .. E.image() .. "\nCOPY kahttpd /bin/kahttpd\n", 420))
  local tag = "mw-test-" .. E.run_id .. ":kahttpd"
  local id, err = E.engine():build { context_tar = assert(tar.pack(d)), tag = tag,
    labels = { ["used-by"] = "millwright", ["mw.test"] = E.run_id } }
  assert(id, err)
  ka_image = tag
  return ka_image
end

-- A command that serves {"beats": n} on /debug/vars at port 8089 with busybox httpd.
function E.httpd_cmd(extra)
  return { "sh", "-c", "mkdir -p /w/debug && echo '{\"ok\":true}' > /w/debug/vars && "
    .. (extra or "") .. "exec httpd -f -p 8089 -h /w" }
end

-- Stack source with IMAGE and NAME substituted (for rewriting a stack file in a test).
function E.render(body, name)
  return (body:gsub("IMAGE", E.image()):gsub("NAME", name))
end

-- Writes a stack file; `body` is Lua source whose `return` is the stack, with IMAGE and NAME
-- substituted. Returns the file path, the stack name and the file's directory.
function E.stack(short, body)
  local name = (E.run_id .. "-" .. short):lower()
  E.stacks[#E.stacks + 1] = name
  local d = E.tmpdir()
  local src = E.render(body, name)
  local path = d .. "/stack.lua"
  assert(fs.write_atomic(path, src, 420))
  return path, name, d
end

-- Starts `mw <args>` with JSON logs into a file; returns a handle. opts: env, cwd, and wrap
-- (argv run before mw's, e.g. { "setpriv", "--bounding-set", "-sys_admin", "--" }).
function E.mw(args, opts)
  opts = opts or {}
  local out = E.tmpdir() .. "/mw.log"
  local argv = {}
  for _, a in ipairs(opts.wrap or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = run.MW
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local env = run.env(opts.env)
  local p = assert(proc.spawn { args = argv, env = env, out = out, cwd = opts.cwd })
  local h = { p = p, out = out, pid = p:pid() }
  E.procs[#E.procs + 1] = h
  -- every JSON event line so far
  function h.events()
    local text = fs.read(out) or ""
    local list = {}
    for line in text:gmatch("[^\n]+") do
      local ok, ev = pcall(cjson.decode, line)
      if ok and type(ev) == "table" then list[#list + 1] = ev end
    end
    return list
  end
  function h.text() return fs.read(out) or "" end
  -- waits for an event matching fields (event, component, and any other field) after index `from`
  function h.wait_event(want, timeout, from)
    local deadline = core.now() + (timeout or 30)
    local exited
    while true do
      local evs = h.events()
      for i = (from or 0) + 1, #evs do
        local ev = evs[i]
        local ok = true
        for k, v in pairs(want) do if ev[k] ~= v then ok = false break end end
        if ok then return ev, i end
      end
      if core.now() > deadline then
        error(string.format("timed out waiting for %s; log:\n%s", cjson.encode(want), h.text()), 2)
      end
      if exited then
        error(string.format("mw exited (%s) while waiting for %s; log:\n%s", tostring(exited), cjson.encode(want), h.text()), 2)
      end
      local code = not h.closed and p:wait(0.05)
      if code then exited = code end      -- read the log once more: its last lines may be the ones
    end
  end
  -- the index of the last event so far: wait_event(want, timeout, h.mark()) waits for a later one
  function h.mark() return #h.events() end
  -- the events after index `from` up to index `to` (the last when nil)
  function h.events_in(from, to)
    local list = {}
    for i, ev in ipairs(h.events()) do
      if i > (from or 0) and (not to or i <= to) then list[#list + 1] = ev end
    end
    return list
  end
  function h.stop(sig) return E.stop_process(h, p, sig, 10) end
  return h
end

-- Stops the process p of handle h with sig (TERM), then KILL after grace seconds -> its exit code.
function E.stop_process(h, p, sig, grace)
  if not h.closed then
    p:kill(sig or "TERM")
    local code = p:wait(grace)
    if not code then p:kill("KILL"); code = p:wait(5) end
    h.code = code
    p:close()
    h.closed = true
  end
  return h.code
end

-- Runs mw to completion (for check, status, destroy...) -> exit code, output.
function E.mw_sync(args, opts)
  local h = E.mw(args, opts)
  local code = h.p:wait((opts and opts.timeout) or 60)
  if not code then h.p:kill("KILL"); code = h.p:wait(5) end
  h.p:close()
  h.closed = true
  return code, h.text()
end

-- Containers of a stack by component name (running or not).
function E.containers(stack)
  local list = assert(E.engine():list { label = { "used-by=millwright", "mw.stack=" .. stack } })
  local by = {}
  for _, x in ipairs(list) do
    local comp = x.Labels["mw.component"]
    if comp then      -- a build's intermediate containers carry the stack's labels but no component
      by[comp] = by[comp] or {}
      table.insert(by[comp], x)
    end
  end
  return by
end

-- Waits until every named component has exactly one running container.
function E.wait_running(stack, comps, timeout)
  local deadline = core.now() + (timeout or 60)
  while true do
    local by = E.containers(stack)
    local ok = true
    for _, c in ipairs(comps) do
      local l = by[c]
      if not l or #l ~= 1 or l[1].State ~= "running" then ok = false end
    end
    if ok then return by end
    if core.now() > deadline then error("timed out waiting for " .. table.concat(comps, ", ") .. " to run", 2) end
    core.sleep(0.05)
  end
end

-- The one container of a component, inspected, once it runs.
function E.running(stack, comp, timeout)
  local by = E.wait_running(stack, { comp }, timeout or 90)
  return assert(E.engine():inspect(by[comp][1].Id))
end

-- The container that holds the network namespace of an inspected container: its network
-- holder (mw.holder) when it joins one, else itself -> inspect.
function E.net_of(info)
  local id = tostring((info.HostConfig or {}).NetworkMode):match("^container:(.+)$")
  if not id then return info end
  return assert(E.engine():inspect(id))
end

-- The list entry of a component's container when it has exactly one, else nil.
function E.one(stack, comp)
  local l = E.containers(stack)[comp]
  return l and #l == 1 and l[1] or nil
end

-- The id of a component's (first listed) container, or nil when it has none.
function E.id_of(stack, comp)
  local l = E.containers(stack)[comp]
  return l and l[1] and l[1].Id
end

-- A component's one container, inspected; fails when it has none or several.
function E.inspect_one(stack, comp)
  local c = E.one(stack, comp)
  assert(c, "one container of " .. comp)
  return assert(E.engine():inspect(c.Id))
end

-- `mw <args>` (a `status --json` command line) -> the decoded document, the raw output; fails
-- on an exit code other than 0 or output that is not JSON.
function E.status(args, timeout)
  local code, out, err = run.mw(args, { timeout = timeout or 120 })
  if code ~= 0 then error(string.format("mw %s: exit %s: %s", table.concat(args, " "), tostring(code), err), 2) end
  local ok, doc = pcall(cjson.decode, out)
  if not ok then error("mw " .. table.concat(args, " ") .. ": not JSON: " .. out, 2) end
  return doc, out
end

-- The component rows of a status document's first stack, by name.
function E.rows(doc)
  local out = {}
  for _, row in ipairs(doc.stacks[1].components) do out[row.name] = row end
  return out
end

-- Runs cmd in container id until it exits 0 printing something that matches pat (a pattern,
-- or plain text with opts.plain) -> that output; fails after 30 s, naming `what`.
function E.exec_until(id, cmd, pat, what, opts)
  local plain = opts and opts.plain or false
  local deadline = core.now() + 30
  local out
  while true do
    local code, o = E.engine():exec(id, cmd)
    out = o
    if code == 0 and o and o:find(pat, 1, plain) then return out end
    if core.now() > deadline then
      error(string.format("timed out waiting for %s; last output: %s", what or pat, tostring(out)), 2)
    end
    core.sleep(0.05)
  end
end

-- Removes everything this run made: containers, networks, volumes, images, temp dirs, mws.
function E.cleanup()
  for _, h in ipairs(E.procs) do pcall(h.stop, "KILL") end
  local e = E.engine()
  local selectors = { "mw.test=" .. E.run_id }
  for _, s in ipairs(E.stacks) do selectors[#selectors + 1] = "mw.stack=" .. s end
  local sels = {}
  for _, l in ipairs(E.labels) do
    for _, sel in ipairs(selectors) do sels[#sels + 1] = { "used-by=" .. l, sel } end
  end
  for _, sel in ipairs(sels) do
    for _, x in ipairs(e:list { label = sel } or {}) do e:remove(x.Id, { force = true, volumes = true }) end
  end
  for _, sel in ipairs(sels) do
    for _, n in ipairs(e:network_list { label = sel } or {}) do e:network_remove(n.Id) end
    for _, v in ipairs((e:volume_list { label = sel }) or {}) do
      e:volume_remove(v.Name or v, true)
    end
  end
  -- twice: an image built FROM another of the run's (kahttpd's on busybox) holds its parent
  -- until it is gone itself, whatever order the list came in
  for _ = 1, 2 do
    for _, sel in ipairs(sels) do
      for _, i in ipairs(e:image_list { label = sel } or {}) do e:image_remove(i.Id, true) end
    end
  end
  -- the network holders' image mw built (mw.holder; shared by every stack, so without force:
  -- one a container still uses stays)
  for _, l in ipairs(E.labels) do
    for _, i in ipairs(e:image_list { label = { "used-by=" .. l, "mw.holder-image" } } or {}) do
      for _, tag in ipairs(i.RepoTags or {}) do e:image_remove(tag) end
    end
  end
  tmp.cleanup()
end

-- Runs the test file's cases; E.cleanup runs after them as one of t.run's after-hooks.
function E.run(t)
  local ok, rc = pcall(t.run)
  if not ok then print("FAIL harness: " .. tostring(rc)); return 1 end
  return rc
end

-- In a test file (not a benchmark, which calls E.cleanup itself): clean up after the cases,
-- before t.run's leak check, so the mw processes this file started are closed by then.
local has_harness, harness = pcall(require, "t")
if has_harness then
  harness.after(function()
    local ok, err = pcall(E.cleanup)
    if not ok then print("cleanup failed: " .. tostring(err)) end
  end)
end

return E
