-- The examples end to end under `mw run`: hello and the pipeline come up healthy, the
-- dispatcher's counters move between two `mw inspect` calls, a killed component and a crashing
-- one come back, and `mw destroy` leaves nothing labelled with the stack.
local t = require "t"
local core = require "mw.core"
local fs = require "mw.fs"
local cjson = require "cjson"
local E = require "engine"

local e = E.engine()

-- The repository root, from this file's path (the runner starts us from the root).
local ROOT = (arg and arg[0] or ""):match("^(.*)/tests/engine/[^/]*$") or "."
local PIPELINE = { "cpuusage", "load", "kernelupgrade", "demoware", "dispatcher", "ingestion" }

-- A fresh clone has no binaries in the build contexts yet: build them (fast when up to date).
local built
local function build_examples()
  if built then return end
  local ok = os.execute("make -s -C '" .. ROOT .. "/examples' >/dev/null")
  assert(ok, "make -C examples failed")
  built = true
end

-- Copies examples/<which> to a temp dir under a stack name of this run, so the test neither
-- collides with someone running the example nor leaves the fixed name behind. `edits` are
-- further {pattern, replacement} pairs for the stack file; each must match once.
local function example(which, edits)
  build_examples()
  local name = (E.run_id .. "-" .. which):lower()
  E.stacks[#E.stacks + 1] = name
  local d = E.tmpdir()
  assert(os.execute(string.format("cp -R '%s/examples/%s' '%s/'", ROOT, which, d)), "cp failed")
  local file = d .. "/" .. which .. "/stack.lua"
  local src = assert(fs.read(file))
  local n
  src, n = src:gsub('\n  name = "' .. which .. '",', '\n  name = "' .. name .. '",')
  assert(n == 1, "stack name not found in examples/" .. which .. "/stack.lua")
  for _, ed in ipairs(edits or {}) do
    src, n = src:gsub(ed[1], ed[2])
    assert(n == 1, "no single match for " .. ed[1])
  end
  assert(fs.write_atomic(file, src, 420))
  return file, name
end

-- Waits for a "healthy" event of every named component after event index `from`.
local function healthy_all(h, names, from, timeout)
  local seen = {}
  local deadline = core.now() + (timeout or 120)
  while true do
    local evs = h.events()
    for i = (from or 0) + 1, #evs do
      if evs[i].event == "healthy" and evs[i].component then seen[evs[i].component] = i end
    end
    local missing = {}
    for _, n in ipairs(names) do if not seen[n] then missing[#missing + 1] = n end end
    if #missing == 0 then return seen end
    if core.now() > deadline then
      error("not healthy: " .. table.concat(missing, ", ") .. "; log:\n" .. h.text(), 2)
    end
    core.sleep(0.1)
  end
end

-- A component's /debug/vars, through `mw inspect`.
local function vars(stack, comp)
  local code, out = E.mw_sync({ "inspect", comp, "--stack", stack }, { timeout = 30 })
  t.eq(code, 0, "mw inspect " .. comp .. ": " .. out)
  local ok, v = pcall(cjson.decode, out:match("%b{}") or "")
  t.ok(ok and type(v) == "table", "mw inspect printed JSON: " .. out)
  return v
end

-- Polls a component's vars until pred(v) holds.
local function wait_vars(stack, comp, pred, timeout, what)
  local last
  local deadline = core.now() + (timeout or 30)
  while true do
    last = vars(stack, comp)
    if pred(last) then return last end
    if core.now() > deadline then
      error(string.format("timed out waiting for %s: %s", what or comp, cjson.encode(last)), 2)
    end
    core.sleep(0.5)
  end
end

local function kill(stack, comp)
  local code, out = E.mw_sync({ "kill", comp, "--stack", stack }, { timeout = 30 })
  t.eq(code, 0, "mw kill " .. comp .. ": " .. out)
end

-- Stops mw (the containers stay), then destroys the stack and checks that nothing is left.
local function stop_and_destroy(h, stack, names)
  t.eq(h.stop("INT"), 0, "mw run exits 0 on SIGINT")
  E.wait_running(stack, names, 10)
  local code, out = E.mw_sync({ "destroy", "--stack", stack }, { timeout = 120 })
  t.eq(code, 0, "mw destroy: " .. out)
  local sel = { label = { "used-by=millwright", "mw.stack=" .. stack } }
  t.eq(#assert(e:list(sel)), 0, "containers left")
  t.eq(#assert(e:network_list(sel)), 0, "networks left")
  t.eq(#(e:volume_list(sel) or {}), 0, "volumes left")
  t.eq(#assert(e:image_list(sel)), 0, "images left")
end

t.test("both examples pass mw check", function()
  for _, which in ipairs { "hello", "pipeline" } do
    local code, out = E.mw_sync({ "check", ROOT .. "/examples/" .. which .. "/stack.lua" })
    t.eq(code, 0, which .. ": " .. out)
  end
end)

t.test("hello: up, healthy, inspect, kill, recovered, destroy", function()
  local file, stack = example("hello")
  local h = E.mw({ "run", "--log-format", "json", file })
  h.wait_event({ event = "healthy", component = "web" }, 120)
  local v = vars(stack, "web")
  t.eq(v.greeting, "hello from mw")
  t.eq(v.cmdline[1], "httpd")
  local before = E.wait_running(stack, { "web" }).web[1].Id
  local mark = #h.events()
  kill(stack, "web")
  h.wait_event({ event = "healthy", component = "web" }, 60, mark)
  local after = E.wait_running(stack, { "web" }).web[1].Id
  t.ok(after ~= before, "web is a new container")
  stop_and_destroy(h, stack, { "web" })
end)

t.test("pipeline: metrics flow, counters move, kill and crash recover, destroy", function()
  -- cpuusage crashes on purpose after 40 metrics (about 5 s) instead of 500.
  local file, stack = example("pipeline", { { "local CPUUSAGE_CRASH_AFTER = %d+", "local CPUUSAGE_CRASH_AFTER = 40" } })
  local h = E.mw({ "run", "--log-format", "json", file })
  healthy_all(h, PIPELINE, 0, 240)
  -- dependency order: the dispatcher after its handlers were healthy, ingestion after it
  local first = {}
  for i, ev in ipairs(h.events()) do
    local k = tostring(ev.event) .. "/" .. tostring(ev.component)
    first[k] = first[k] or i
  end
  for _, hnd in ipairs { "cpuusage", "load", "kernelupgrade" } do
    t.ok(first["started/dispatcher"] > first["healthy/" .. hnd], "dispatcher started after " .. hnd .. " was healthy")
  end
  t.ok(first["started/ingestion"] > first["healthy/dispatcher"], "ingestion started after the dispatcher was healthy")
  t.ok(first["started/ingestion"] > first["healthy/demoware"], "ingestion started after demoware was healthy")

  -- counters move between two inspections, and every stage saw metrics
  local d1 = wait_vars(stack, "dispatcher", function(v) return v.forwarded > 0 end, 30, "first forwards")
  local d2 = wait_vars(stack, "dispatcher", function(v)
    return v.received > d1.received and v.forwarded > d1.forwarded
  end, 30, "dispatcher counters to move")
  t.eq(d2.cmdline[1], "/dispatcher")
  t.ok(d2.memstats.rss > 0 and d2.memstats.vm_size >= d2.memstats.rss, "real memory figures")
  t.eq(d2.buffer_cap, 3000, "DISPATCH_QUEUE_SIZE x 3 handlers")
  t.eq(d2.unknown_kind, 0)
  for _, hnd in ipairs { "cpuusage", "load", "kernelupgrade" } do
    t.ok(d2.handlers[hnd].forwarded > 0, hnd .. " got metrics from the dispatcher")
  end
  local ing = vars(stack, "ingestion")
  t.eq(ing.buffer_cap, 1000, "INGESTION_BUFFER_SIZE honoured")
  t.eq(ing.max_metrics, 100, "MAX_METRICS honoured")
  t.ok(ing.received > 0 and ing.forwarded > 0, "ingestion polled and pushed")
  local src = vars(stack, "demoware")
  t.ok(src.served > 0, "demoware served metrics")
  local load = wait_vars(stack, "load", function(v) return v.received > 0 end, 30, "load to receive")
  t.eq(load.malformed, 0)
  t.eq(load.misrouted, 0)

  -- the planned crash: exit status 3, brought back by the stack's own policy function
  local crash, ci = h.wait_event({ event = "failed", component = "cpuusage", exit_code = 3 }, 60)
  t.eq(crash.delay, 0.5, "the custom policy's delay")
  h.wait_event({ event = "healthy", component = "cpuusage" }, 60, ci)
  for _, ev in ipairs(h.events()) do
    t.ok(ev.event ~= "policy_error", "policy error: " .. tostring(ev.msg))
  end

  -- kill the dispatcher: mw recreates it, ingestion reconnects, metrics flow again
  local before = E.wait_running(stack, { "dispatcher" }).dispatcher[1].Id
  local ing1 = vars(stack, "ingestion")
  local mark = #h.events()
  kill(stack, "dispatcher")
  h.wait_event({ event = "healthy", component = "dispatcher" }, 60, mark)
  local after = E.wait_running(stack, { "dispatcher" }).dispatcher[1].Id
  t.ok(after ~= before, "the dispatcher is a new container")
  wait_vars(stack, "dispatcher", function(v) return v.forwarded > 0 end, 30, "the new dispatcher to forward")
  wait_vars(stack, "ingestion", function(v) return v.connects > ing1.connects end, 30, "ingestion to reconnect")

  stop_and_destroy(h, stack, { "demoware", "ingestion", "dispatcher", "load", "kernelupgrade" })
end)

os.exit(E.run(t))
