-- Shared by the benchmarks: knobs, the machine line, percentiles, mw processes whose JSON log
-- is read incrementally, /proc sampling, label cleanup, and the tables they print and append
-- to RESULTS.md. Engine helpers (the busybox image, stack files, final cleanup) are tests/lib's.
local core = require "mw.core"
local proc = require "mw.proc"
local fs = require "mw.fs"
local http = require "mw.http"
local cjson = require "cjson"
local docker = require "mw.docker"
local E = require "engine"
local run = require "run"

local B = { E = E }

B.MW_BIN = run.MW
B.RESULTS = os.getenv("BENCH_RESULTS") or "tests/bench/RESULTS.md"
B.CMD = { "sh", "-c", "mkdir -p /w/debug && echo '{\"ok\":true}' > /w/debug/vars && exec httpd -f -p 8089 -h /w" }
B.CLK_TCK = 100

-- A numeric knob from the environment.
function B.knob(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v == nil then return default end
  return v
end

-- A list knob ("1,10,30") from the environment.
function B.list_knob(name, default)
  local v = os.getenv(name)
  if not v or v == "" then return default end
  local out = {}
  for x in v:gmatch("[^,%s]+") do out[#out + 1] = tonumber(x) or x end
  return out
end

local function capture(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  if not f then return "" end
  local s = f:read("a") or ""
  f:close()
  return (s:gsub("%s+$", ""))
end
B.capture = capture   -- blocks the loop: only outside timed sections

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
B.read = read

-- The machine the figures come from (plus how busy it was: other engineers share the engine).
local machine
function B.machine()
  if machine then return machine end
  local e = E.engine()
  local mem = tonumber((read("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)")) or 0
  local cpu = (read("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
  local running = 0
  for _, x in ipairs(e:list { status = "running" } or {}) do
    if x.State == "running" then running = running + 1 end
  end
  machine = {
    nproc = tonumber(capture("nproc")) or 0, mem_gib = mem / 1048576, cpu = cpu,
    kernel = capture("uname -r"), docker = tostring(e.version), api = tostring(e.api),
    load = (read("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)") or "?",
    running = running,
  }
  machine.line = string.format("%d CPUs (%s), %.1f GiB, Linux %s, Docker %s (API %s); at the start: load %s, %d containers running",
    machine.nproc, machine.cpu, machine.mem_gib, machine.kernel, machine.docker, machine.api, machine.load,
    machine.running)
  return machine
end

-- statistics ---------------------------------------------------------------------------------

function B.sorted(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s
end

-- Nearest-rank percentile (p in 0..100); nil for an empty list.
function B.pct(xs, p)
  if #xs == 0 then return nil end
  local s = B.sorted(xs)
  local k = math.max(1, math.min(#s, math.ceil(p / 100 * #s)))
  return s[k]
end
function B.median(xs) return B.pct(xs, 50) end
function B.max(xs) local m; for _, x in ipairs(xs) do if not m or x > m then m = x end end return m end
function B.min(xs) local m; for _, x in ipairs(xs) do if not m or x < m then m = x end end return m end
function B.mean(xs)
  if #xs == 0 then return nil end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

function B.s(x) if x == nil then return "n/a" end return string.format("%.3f s", x) end
function B.ms(x) if x == nil then return "n/a" end return string.format("%.1f ms", x * 1000) end
function B.ratio(a, b)
  if a == nil or b == nil or b == 0 then return "n/a" end
  return string.format("%.2f", a / b)
end

-- reporting ----------------------------------------------------------------------------------

local function pad(s, n) return s .. string.rep(" ", math.max(0, n - utf8.len(s))) end

-- Prints a table (plain text) and appends it to RESULTS.md (markdown). rows are lists of
-- strings; notes are lines printed under it.
function B.report(title, header, rows, notes)
  local m = B.machine()
  local w = {}
  for i, h in ipairs(header) do w[i] = utf8.len(h) end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, utf8.len(tostring(c))) end
  end
  local out = { "", "== " .. title .. " ==", "machine: " .. m.line }
  local function line(r)
    local cells = {}
    for i = 1, #header do cells[i] = pad(tostring(r[i] or ""), w[i]) end
    return table.concat(cells, " | ")
  end
  out[#out + 1] = line(header)
  local dashes = {}
  for i = 1, #header do dashes[i] = string.rep("-", w[i]) end
  out[#out + 1] = table.concat(dashes, "-+-")
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  for _, n in ipairs(notes or {}) do out[#out + 1] = "  " .. n end
  print(table.concat(out, "\n"))
  io.stdout:flush()

  local md = { "", "### " .. title, "", "Machine: " .. m.line .. "; " .. os.date("!%Y-%m-%d %H:%M UTC") .. ".", "" }
  md[#md + 1] = "| " .. table.concat(header, " | ") .. " |"
  local sep = {}
  for i = 1, #header do sep[i] = "---" end
  md[#md + 1] = "|" .. table.concat(sep, "|") .. "|"
  for _, r in ipairs(rows) do
    local cells = {}
    for i = 1, #header do cells[i] = tostring(r[i] or ""):gsub("|", "\\|") end
    md[#md + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  if notes and #notes > 0 then
    md[#md + 1] = ""
    for _, n in ipairs(notes) do md[#md + 1] = "- " .. n end
  end
  if B.RESULTS ~= "" and B.RESULTS ~= "-" then
    local f = io.open(B.RESULTS, "a")
    if f then f:write(table.concat(md, "\n"), "\n"); f:close() end
  end
end

-- A target check for the tables.
function B.met(ok) if ok == nil then return "n/a" end return ok and "met" or "NOT met" end

-- /proc ------------------------------------------------------------------------------------------

-- CPU seconds (utime+stime), VmRSS, VmHWM and Private_Dirty (kB) of a process.
function B.sample(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  local rest = stat:match("%) (.*)$")
  local f = {}
  for x in rest:gmatch("%S+") do f[#f + 1] = x end
  -- fields after ")" start at 3 (state); utime is 14, stime 15
  local ticks = tonumber(f[14 - 2]) + tonumber(f[15 - 2])
  local status = read("/proc/" .. pid .. "/status") or ""
  local rollup = read("/proc/" .. pid .. "/smaps_rollup") or ""
  return {
    t = core.now(), cpu = ticks / B.CLK_TCK,
    rss = tonumber(status:match("VmRSS:%s*(%d+)")) or 0,
    hwm = tonumber(status:match("VmHWM:%s*(%d+)")) or 0,
    pd = tonumber(rollup:match("Private_Dirty:%s*(%d+)")) or 0,
    threads = tonumber(status:match("Threads:%s*(%d+)")) or 0,
  }
end

-- engine and HTTP ----------------------------------------------------------------------------

-- A free TCP port on 127.0.0.1 (listen on 0, close).
function B.free_port()
  local net = require "mw.net"
  local s = assert(net.listen("127.0.0.1", 0))
  local p = s:port()
  s:close()
  return p
end

-- GET http://127.0.0.1:port/debug/vars -> true when it answers 200.
function B.answers(port, timeout)
  local res = http.request { url = "http://127.0.0.1:" .. port .. "/debug/vars", timeout = timeout or 0.5,
                             connect_timeout = timeout or 0.5 }
  return res ~= nil and res.status == 200
end

-- Starts a GET every `every` seconds without waiting for the one before, so requests stuck
-- on a half-ready endpoint cannot hide the moment it answers -> core.now() when the first 200
-- came | nil (timeout). Each GET gives up after 1 s, so at 5 ms at most ~200 are in flight;
-- the cap (250) never binds then. (It was 50: while a restarting container's port proxy held
-- the connections it accepted, about a second each, 50 stuck GETs stopped the polling for
-- ~0.75 s, and every recovery measured ~1.25 s whenever the service really came back.)
local MAX_INFLIGHT = 250
function B.poll_answer(port, every, timeout)
  local deadline = core.now() + (timeout or 30)
  local done, inflight = nil, 0
  local cond = core.cond()
  while not done and core.now() < deadline do
    if inflight < MAX_INFLIGHT then
      inflight = inflight + 1
      core.spawn(function()
        local ok = B.answers(port, 1)
        inflight = inflight - 1
        if ok and not done then done = core.now(); cond:notify() end
      end, "bench-poll")
    end
    cond:wait(every or 0.005)
  end
  while inflight > 0 do core.sleep(0.01) end    -- no request of ours outlives the poll
  return done
end

-- Runs fn over items with at most `width` tasks at once; waits for all.
function B.parallel(items, width, fn)
  local i, tasks = 0, {}
  local results = {}
  for _ = 1, math.min(width, #items) do
    tasks[#tasks + 1] = core.spawn(function()
      while true do
        i = i + 1
        local k = i
        if k > #items then return end
        results[k] = { fn(items[k], k) }
      end
    end, "bench-par")
  end
  for _, t in ipairs(tasks) do
    local ok, err = core.join(t)
    if not ok then error(err, 0) end
  end
  return results
end

-- Removes the containers and networks that carry every label in `labels` ("k=v" list).
function B.remove_labelled(labels)
  local e = E.engine()
  local sel = { "used-by=millwright" }
  for _, l in ipairs(labels) do sel[#sel + 1] = l end
  local list = e:list { label = sel } or {}
  B.parallel(list, 8, function(x) e:remove(x.Id, { force = true, volumes = true }) end)
  for _, n in ipairs(e:network_list { label = sel } or {}) do e:network_remove(n.Id) end
  return #list
end

-- Removes a stack that mw ran (containers, network).
function B.remove_stack(name) return B.remove_labelled { "mw.stack=" .. name } end

-- Labels for containers the bench makes itself (anchors, compose): cleaned by E.cleanup too.
function B.labels(extra)
  local l = { ["used-by"] = "millwright", ["mw.test"] = E.run_id }
  for k, v in pairs(extra or {}) do l[k] = v end
  return l
end

-- mw processes ---------------------------------------------------------------------------------

-- Starts `mw <args>` with JSON logs into a file. The handle reads the log incrementally:
-- h.poll() adds new events to h.evs; h.wait(pred, timeout, from) waits for one.
function B.mw(args, opts)
  opts = opts or {}
  local out = E.tmpdir() .. "/mw.log"
  local argv = { B.MW_BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local extra = { opts.docker_host and ("DOCKER_HOST=" .. opts.docker_host) }   -- over the inherited one
  for _, kv in ipairs(opts.env or {}) do extra[#extra + 1] = kv end
  local env = run.env(extra)
  local t0 = core.time()
  local p = assert(proc.spawn { args = argv, env = env, out = out, cwd = opts.cwd })
  local h = { p = p, pid = p:pid(), out = out, evs = {}, pos = 0, partial = "", raw = {}, t_spawn = t0 }
  E.procs[#E.procs + 1] = { stop = function() h.stop("KILL") end }

  function h.poll()
    local f = io.open(out, "rb")
    if not f then return end
    f:seek("set", h.pos)
    local data = f:read("a") or ""
    f:close()
    h.pos = h.pos + #data
    data = h.partial .. data
    local last = 1
    for line, nxt in data:gmatch("([^\n]*)\n()") do
      last = nxt
      local ok, ev = pcall(cjson.decode, line)
      if ok and type(ev) == "table" then h.evs[#h.evs + 1] = ev
      elseif line ~= "" then h.raw[#h.raw + 1] = line end
    end
    h.partial = data:sub(last)
  end

  function h.text()
    return read(out) or ""
  end

  -- waits until pred(ev, i) holds for an event after index `from` -> ev, i; raises on timeout
  -- or exit (with the log's tail).
  function h.wait(pred, timeout, from)
    local deadline = core.now() + (timeout or 60)
    local i = from or 0
    while true do
      h.poll()
      while i < #h.evs do
        i = i + 1
        if pred(h.evs[i], i) then return h.evs[i], i end
      end
      if h.exited then
        error(string.format("mw exited (%s); log tail:\n%s", tostring(h.exited), h.text():sub(-3000)), 2)
      end
      if core.now() > deadline then
        error("timed out waiting in mw's log; tail:\n" .. h.text():sub(-3000), 2)
      end
      local code = p:wait(0.02)
      if code then h.exited = code end
    end
  end

  -- waits for an event by fields (like E's wait_event)
  function h.wait_event(want, timeout, from)
    return h.wait(function(ev)
      for k, v in pairs(want) do if ev[k] ~= v then return false end end
      return true
    end, timeout, from)
  end

  -- waits until each name in `names` has an event `event` after `from` -> { name = ev }, last time
  function h.wait_all(event, names, timeout, from)
    local want, left = {}, 0
    for _, n in ipairs(names) do want[n] = true; left = left + 1 end
    local got, last = {}, 0
    h.wait(function(ev)
      if ev.event == event and want[ev.component] and not got[ev.component] then
        got[ev.component] = ev
        left = left - 1
        if ev.time > last then last = ev.time end
      end
      return left == 0
    end, timeout, from)
    return got, last
  end

  -- "failed" events after index `from`: count, and the distinct messages (numbers blurred)
  function h.failures(from)
    h.poll()
    local n, seen, msgs = 0, {}, {}
    for i = (from or 0) + 1, #h.evs do
      local ev = h.evs[i]
      if ev.event == "failed" then
        n = n + 1
        local m = tostring(ev.msg):gsub("%d+", "N")
        if not seen[m] then seen[m] = true; msgs[#msgs + 1] = m end
      end
    end
    return n, msgs
  end

  function h.stop(sig) return E.stop_process(h, p, sig, 15) end
  return h
end

-- Runs a command to completion -> exit code, seconds, output text.
function B.run(argv, opts)
  opts = opts or {}
  local env = { "HOME=" .. (os.getenv("HOME") or "/root") }
  for _, kv in ipairs(opts.env or {}) do env[#env + 1] = kv end
  local code, out, _, secs = run.program(argv, { env = env, inherit = { "PATH", "DOCKER_HOST" }, cwd = opts.cwd,
    timeout = opts.timeout or 300, merge = true })
  if code == "timeout" then code = -1 end
  return code, secs, out
end

-- Stack source for n busybox httpd components. o: heartbeat (a Lua table source or nil),
-- chain (each depends on the one before), cond ("healthy"/"started"), ports (a list source),
-- restart (Lua source of a policy), prelude (Lua source before the return).
function B.stack_source(n, o)
  o = o or {}
  local lines = { o.prelude or "", 'local CMD = ' .. B.lua_list(B.CMD) }
  lines[#lines + 1] = "return { name = \"NAME\", components = {"
  for i = 1, n do
    local fields = { 'image = "IMAGE"', "command = CMD" }
    if o.heartbeat then fields[#fields + 1] = "heartbeat = " .. o.heartbeat end
    if o.ports then fields[#fields + 1] = "ports = " .. (type(o.ports) == "function" and o.ports(i) or o.ports) end
    if o.restart then fields[#fields + 1] = "restart = " .. o.restart end
    if o.fields then fields[#fields + 1] = o.fields end
    if o.chain and i > 1 then
      fields[#fields + 1] = string.format('depends_on = { %s = "%s" }', B.cname(i - 1), o.cond or "healthy")
    end
    lines[#lines + 1] = string.format("  %s = { %s },", B.cname(i), table.concat(fields, ", "))
  end
  lines[#lines + 1] = "} }"
  return table.concat(lines, "\n") .. "\n"
end

-- One component brought up by mw and removed, untimed: the network holders' image (mw.holder)
-- is built once per engine, at a user's first `mw run`, and a timed trial should not pay it
-- any more than the anchor pays the build of the image it runs.
function B.warm_up()
  local file, name, dir = B.E.stack("warm", B.stack_source(1, {}))
  local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
  local ok, err = pcall(h.wait_all, "started", B.names(1), 120)
  h.stop()
  B.remove_stack(name)
  if not ok then error(err, 0) end
end

function B.cname(i) return string.format("c%03d", i) end
function B.names(n)
  local out = {}
  for i = 1, n do out[i] = B.cname(i) end
  return out
end

function B.lua_list(t)
  local parts = {}
  for i, s in ipairs(t) do parts[i] = string.format("%q", s) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- Runs the bench body, then cleans up whatever happened; returns the exit status.
function B.main(fn)
  local ok, err = xpcall(fn, debug.traceback)
  local cok, cerr = pcall(E.cleanup)
  if not cok then print("cleanup failed: " .. tostring(cerr)) end
  if not ok then print("BENCH FAILED: " .. tostring(err)); return 1 end
  return 0
end

B.docker = docker
B.cjson = cjson
B.fs = fs
return B
