-- Benchmark 1, cold start: N independent components (1, 10, 30) and a 10-deep dependency chain,
-- brought up (a) by a client issuing every create+start straight to the Engine API in parallel,
-- (b) by Debian's docker-compose `up -d`, (c) by `mw run`. Every container is the same busybox
-- httpd with port 8089 published on an ephemeral 127.0.0.1 port, on a fresh bridge network.
local core = require "mw.core"
local B = require "benchlib"
local P = require "proxy"
local E = B.E
local docker = B.docker

local TRIALS = B.knob("BENCH_COLD_TRIALS", 3)
local TRIALS_LARGE = B.knob("BENCH_COLD_TRIALS_LARGE", 2)   -- N >= 30 and the chain: keeps make bench near 30 min
local SIZES = B.list_knob("BENCH_COLD_SIZES", { 1, 8, 30, "chain" })
local CHAIN = B.knob("BENCH_CHAIN_DEPTH", 10)
local HB_INTERVAL = os.getenv("BENCH_COLD_HB") or "100ms"
local HB = string.format('{ interval = "%s", timeout = "1s", misses = 3, grace = "10s" }', HB_INTERVAL)
local POLL = 0.005
local TARGET = 1.03          -- c/a and c/a' for N = 8 and 30 (issue 17 §4)
local CHAIN_TARGET = 1.05    -- the chain against its critical path

local seq = 0
local function tag()
  seq = seq + 1
  return string.format("%s-cold%d", E.run_id, seq)
end

local function host_port(info)
  local b = info.NetworkSettings and info.NetworkSettings.Ports and info.NetworkSettings.Ports["8089/tcp"]
  return b and b[1] and tonumber(b[1].HostPort)
end

local function has_compose()
  local code = B.run({ "docker-compose", "version" }, { timeout = 30 })
  return code == 0
end

-- (a) one task per container: create, start (and, with `answer`, inspect and poll its port
-- every 5 ms until busybox httpd answers). A chain does the same one level after the other:
-- its critical path. -> seconds from the first call (network create included) to the last.
local function anchor(n, answer, chain)
  local e = E.engine()
  local t = tag()
  local labels = B.labels { ["mw.bench"] = t }
  local img = E.image()
  local t0 = core.now()
  local net = "mwb-" .. t
  assert(e:network_create(net, labels))
  local t_net = core.now() - t0
  local function one(i)
    local body = docker.container_spec {
      image = img, cmd = B.CMD, labels = labels, network = net, aliases = { B.cname(i) },
      ports = { { container = 8089, ip = "127.0.0.1" } },
    }
    local id = assert(e:create(t .. "-" .. B.cname(i), body))
    assert(e:start(id))
    if answer then
      local info = assert(e:inspect(id))
      assert(B.poll_answer(assert(host_port(info)), POLL, 60), "no answer")
    end
    return core.now()
  end
  local last = 0
  if chain then
    for i = 1, n do last = one(i) end
  else
    local tasks = {}
    for i = 1, n do tasks[i] = core.spawn(one, "anchor-" .. i, i) end
    for _, task in ipairs(tasks) do
      local ok, r = core.join(task)
      if not ok then error(r, 0) end
      last = math.max(last, r)
    end
  end
  local secs = last - t0
  B.remove_labelled { "mw.bench=" .. t }
  return secs, { net = t_net }
end

-- (b) docker-compose up -d of the equivalent file (JSON is YAML); for the chain, each service
-- waits for the one before to be healthy (a Docker healthcheck at the same interval as mw's
-- heartbeat). -> seconds until `up -d` exits with every container running.
local function compose(n, chain)
  local t = tag()
  local proj = t:gsub("[^%w]", ""):lower()
  local labels = B.labels { ["mw.bench"] = t }
  local services = {}
  for i = 1, n do
    local s = {
      image = E.image(), command = docker.array(B.CMD), ports = docker.array { "127.0.0.1::8089" },
      labels = docker.object(labels),
    }
    if chain then
      s.healthcheck = {
        test = docker.array { "CMD", "wget", "-q", "-O-", "http://127.0.0.1:8089/debug/vars" },
        -- start_period like mw's grace: failures in it do not count (a loaded engine's exec is slow)
        interval = HB_INTERVAL, timeout = "1s", retries = 3, start_period = "10s",
      }
      if i > 1 then s.depends_on = { [B.cname(i - 1)] = { condition = "service_healthy" } } end
    end
    services[B.cname(i)] = s
  end
  local doc = { version = "2.4", services = services, networks = { default = { labels = docker.object(labels) } } }
  local dir = E.tmpdir()
  local file = dir .. "/docker-compose.json"
  assert(B.fs.write_atomic(file, docker.encode(doc), 420))
  local code, secs, out = B.run({ "docker-compose", "-p", proj, "-f", file, "up", "-d" }, { timeout = 600, cwd = dir })
  local running = 0
  for _, x in ipairs(E.engine():list { label = { "mw.bench=" .. t } } or {}) do
    if x.State == "running" then running = running + 1 end
  end
  B.remove_labelled { "mw.bench=" .. t }
  if code ~= 0 or running ~= n then
    error(string.format("docker-compose up -d exited %s with %d/%d running:\n%s", tostring(code), running, n, out:sub(-2000)), 0)
  end
  return secs
end

-- (c) mw run until every component is healthy (heartbeat) or started (none). -> seconds from
-- spawning mw, and from its "start" event (after loading the stack and connecting). `free`:
-- every component has `hold_network = false` (one container an instance, as compose makes).
local function mw(n, hb, chain, free)
  local src = B.stack_source(n, {
    heartbeat = hb and HB or nil,
    ports = (not hb) and '{ "127.0.0.1::8089" }' or nil,
    chain = chain, cond = hb and "healthy" or "started",
    fields = free and "hold_network = false" or nil,
  })
  seq = seq + 1
  local file, name, dir = E.stack("cold" .. seq, src)
  local h = B.mw { "run", "--log-format", "json", "--state-dir", dir .. "/state", file }
  local ok, err = pcall(function()
    local _, last = h.wait_all(hb and "healthy" or "started", B.names(n), 300)
    -- mw's own CPU (utime+stime, 10 ms ticks) from spawn to all up: a figure load moves little
    local sample = B.sample(h.pid)
    local start = h.wait_event({ event = "start" }, 1)
    local nf, why = h.failures(0)
    h.result = { last - h.t_spawn, last - start.time, nf, why, sample and sample.cpu }
  end)
  h.stop()
  B.remove_stack(name)
  if not ok then error(err, 0) end
  return h.result[1], { internal = h.result[2], failures = h.result[3], why = h.result[4], cpu = h.result[5] }
end

-- One more (untimed) mw run through the counting forwarder: which Engine API calls it makes
-- to bring the stack up, and how long after spawning mw the first one comes.
local function mw_calls(n, chain)
  local sock = string.format("/tmp/mw-bench-%s-cold.sock", E.run_id)
  local proxy = P.start(sock)
  local first
  proxy.on_request = function() first = first or core.time() end
  seq = seq + 1
  local src = B.stack_source(n, { heartbeat = HB, chain = chain })
  local file, name, dir = E.stack("cold" .. seq, src)
  local h = B.mw({ "run", "--log-format", "json", "--state-dir", dir .. "/state", file }, { docker_host = "unix://" .. sock })
  local ok, err = pcall(h.wait_all, "healthy", B.names(n), 300)
  local snap = proxy.snapshot()
  h.stop()
  proxy.stop()
  B.remove_stack(name)
  if not ok then return nil, err end
  local count, kinds = P.diff({ count = 0, kinds = {} }, snap)
  return { count = count, kinds = kinds, first = first and (first - h.t_spawn) }
end

local function median_of(list, key)
  local xs = {}
  for _, r in ipairs(list) do
    if key then xs[#xs + 1] = r[key] else xs[#xs + 1] = r end
  end
  return B.median(xs)
end

return B.main(function()
  B.machine()
  E.image()              -- prebuilt before any timing
  B.warm_up()            -- and the holders' image
  local compose_ok = has_compose()
  local skip_compose
  if not compose_ok then skip_compose = "docker-compose is not installed or does not run (apt-get install -y docker-compose)" end
  local rows, notes = {}, {}
  for _, size in ipairs(SIZES) do
    local chain = size == "chain"
    local n = chain and CHAIN or size
    local methods
    if chain then
      methods = { "a_answer", "mw_hb" }
    else
      methods = { "a_run", "a_answer", "mw_nohb", "mw_hb", "mw_free" }
    end
    if compose_ok then table.insert(methods, 2, "compose") end
    local res = {}
    for _, m in ipairs(methods) do res[m] = {} end
    local trials = (chain or n >= 30) and math.min(TRIALS, TRIALS_LARGE) or TRIALS
    for trial = 1, trials do
      for k = 0, #methods - 1 do
        local m = methods[(k + trial - 1) % #methods + 1]       -- rotate the order per trial
        local ok, secs, extra = pcall(function()
          if m == "a_run" then return anchor(n, false, chain)
          elseif m == "a_answer" then return anchor(n, true, chain)
          elseif m == "compose" then return compose(n, chain)
          elseif m == "mw_nohb" then return mw(n, false, chain)
          elseif m == "mw_free" then return mw(n, true, chain, true)
          else return mw(n, true, chain) end
        end)
        if ok then
          table.insert(res[m], secs)
          if extra and extra.internal then
            res[m .. "_int"] = res[m .. "_int"] or {}
            table.insert(res[m .. "_int"], extra.internal)
          end
          if extra and extra.cpu then
            res[m .. "_cpu"] = res[m .. "_cpu"] or {}
            table.insert(res[m .. "_cpu"], extra.cpu)
          end
          if extra and extra.failures and extra.failures > 0 then
            notes[#notes + 1] = string.format("%s %s trial %d: mw logged %d failures while coming up (%s)",
              chain and ("chain of " .. n) or ("N=" .. n), m, trial, extra.failures, table.concat(extra.why, " / "))
          end
          print(string.format("  %s %s trial %d: %.3f s", chain and ("chain " .. n) or ("N=" .. n), m, trial, secs))
        else
          print(string.format("  %s %s trial %d FAILED: %s", chain and "chain" or ("N=" .. n), m, trial, tostring(secs)))
          notes[#notes + 1] = string.format("%s %s trial %d failed: %s", chain and "chain" or ("N=" .. n), m, trial,
            tostring(secs):gsub("\n.*", ""))
        end
        core.sleep(0.5)
      end
    end
    local med = {}
    for m, list in pairs(res) do med[m] = median_of(list) end
    if med.mw_nohb_cpu or med.mw_hb_cpu then
      notes[#notes + 1] = string.format("%s: mw's own CPU (utime+stime) from spawn until all up: %s without heartbeats, "
        .. "%s with (median; 10 ms ticks)", chain and ("chain of " .. n) or ("N=" .. n),
        med.mw_nohb_cpu and B.s(med.mw_nohb_cpu) or "n/a", med.mw_hb_cpu and B.s(med.mw_hb_cpu) or "n/a")
    end
    local calls = mw_calls(n, chain)
    if calls then
      notes[#notes + 1] = string.format("%s: mw (hb) made %d API calls to come up (%s); its first call came %s after spawn",
        chain and ("chain of " .. n) or ("N=" .. n), calls.count, calls.kinds, B.ms(calls.first))
    end
    local function r(a, b, target)
      if not a or not b then return "n/a" end
      local s = B.ratio(a, b)
      if target then s = s .. ((a / b <= target) and "" or " ✗") end
      return s
    end
    if chain then
      rows[#rows + 1] = {
        string.format("chain of %d", n), "n/a", B.s(med.a_answer), compose_ok and B.s(med.compose) or "skipped",
        "n/a", B.s(med.mw_hb), B.s(med.mw_hb_int), "n/a", "n/a", r(med.mw_hb, med.a_answer, CHAIN_TARGET), "n/a", "n/a",
        r(med.mw_hb, med.compose),
      }
    else
      rows[#rows + 1] = {
        string.format("N=%d", n), B.s(med.a_run), B.s(med.a_answer), compose_ok and B.s(med.compose) or "skipped",
        B.s(med.mw_nohb), B.s(med.mw_hb), B.s(med.mw_hb_int), B.s(med.mw_free), r(med.mw_nohb, med.a_run, TARGET),
        r(med.mw_hb, med.a_answer, TARGET), r(med.mw_free, med.a_answer, TARGET), r(med.mw_nohb, med.compose),
        r(med.mw_hb, med.compose),
      }
    end
  end
  notes[#notes + 1] = string.format("median (nearest rank) of %d trials each for N < 30, %d for N ≥ 30 and the chain "
    .. "(BENCH_COLD_TRIALS, BENCH_COLD_TRIALS_LARGE); methods run in rotating order; containers removed between runs",
    TRIALS, math.min(TRIALS, TRIALS_LARGE))
  notes[#notes + 1] = "a: one task per container issuing create+start straight to the API (network create included); "
    .. "a': the same plus inspect and a poll of the published port every 5 ms until busybox httpd answers; "
    .. string.format("for the chain, a' is the critical path: each level created, started and answering before the next")
  notes[#notes + 1] = "b: `docker-compose up -d` (Debian's python v1) of the equivalent file, until it exits with all running; "
    .. "the chain uses depends_on service_healthy with a wget healthcheck every " .. HB_INTERVAL
  notes[#notes + 1] = "c: `mw run` from process spawn until the last component's \"started\" event (no heartbeat, port published the "
    .. "same way) or \"healthy\" event (HTTP heartbeat every " .. HB_INTERVAL .. "); 'mw after start' is from mw's own "
    .. "\"start\" event (stack loaded, engine connected, in line) to the last healthy; 'not held': the same with "
    .. "hold_network = false on every component (one container an instance; the default makes two, the network "
    .. "holder and the component's)"
  notes[#notes + 1] = string.format("✗ marks a ratio over its target (issue 17): %.2f for N components, %.2f for the "
    .. "chain against its critical path", TARGET, CHAIN_TARGET)
  if skip_compose then notes[#notes + 1] = "b skipped: " .. skip_compose end
  B.report("Cold start (1)", {
    "stack", "a engine (running)", "a' engine (answering)", "b compose up -d", "c mw (started, no hb)",
    "c mw (healthy, hb)", "mw after start (hb)", "c mw (hb, not held)", "c/a no hb", "c/a' hb", "c/a' not held",
    "c/b no hb", "c/b hb",
  }, rows, notes)
end)
