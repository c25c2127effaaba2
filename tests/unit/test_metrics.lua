-- Unit tests of lua/mw/metrics.lua: the Prometheus text it writes is read back by a separate
-- parser here (names, HELP and TYPE, label escaping, cumulative histogram buckets), and the
-- collector's counts from made-up snapshots. Runs under `mw script`.
if not pcall(require, "t") then package.path = "tests/lib/?.lua;" .. package.path end
local t = require "t"
local metrics = require "mw.metrics"

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"

-- Reads one label set "{a="x",b="y\"z"}" from position i -> labels, next position.
local function parse_labels(s, i)
  local labels = {}
  if s:sub(i, i) ~= "{" then return labels, i end
  i = i + 1
  while true do
    if s:sub(i, i) == "}" then return labels, i + 1 end
    local name, after = s:match("^([^=]+)=\"()", i)
    if not name then error("bad label at: " .. s:sub(i)) end
    if not name:find(LABEL) then error("bad label name " .. name) end
    i = after
    local val = {}
    while true do
      local ch = s:sub(i, i)
      if ch == "" then error("unterminated label value in " .. s) end
      if ch == "\\" then
        local nx = s:sub(i + 1, i + 1)
        if nx == "n" then val[#val + 1] = "\n"
        elseif nx == "\\" or nx == '"' then val[#val + 1] = nx
        else error("bad escape \\" .. nx .. " in " .. s) end
        i = i + 2
      elseif ch == '"' then
        i = i + 1
        break
      elseif ch == "\n" then
        error("raw newline in a label value")
      else
        val[#val + 1] = ch
        i = i + 1
      end
    end
    if labels[name] then error("label " .. name .. " twice") end
    labels[name] = table.concat(val)
    if s:sub(i, i) == "," then i = i + 1 end
  end
end

local function parse_value(v)
  if v == "+Inf" then return math.huge elseif v == "-Inf" then return -math.huge elseif v == "NaN" then return 0 / 0 end
  local n = tonumber(v)
  if not n then error("bad value " .. v) end
  return n
end

-- The exposition text -> { [family] = { type =, help =, samples = { { name =, labels =, value = } } } },
-- checking the format's rules as it goes.
local function parse(text)
  local fams, current = {}, nil
  if text:sub(-1) ~= "\n" then error("the text must end with a newline") end
  for line in text:gmatch("([^\n]*)\n") do
    if line:find("^# HELP ") then
      local name, help = line:match("^# HELP (%S+) ?(.*)$")
      if not name:find(NAME) then error("bad metric name " .. name) end
      fams[name] = fams[name] or { samples = {} }
      if fams[name].help then error("two HELP lines for " .. name) end
      fams[name].help = help
    elseif line:find("^# TYPE ") then
      local name, kind = line:match("^# TYPE (%S+) (%S+)$")
      if not name:find(NAME) then error("bad metric name " .. name) end
      local ok = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }
      if not ok[kind] then error("bad type " .. tostring(kind)) end
      fams[name] = fams[name] or { samples = {} }
      if #fams[name].samples > 0 then error("TYPE of " .. name .. " after its samples") end
      fams[name].type = kind
      current = name
    elseif not (line:find("^#") or line == "") then   -- other comments are skipped
      local name, rest = line:match("^([^{%s]+)(.*)$")
      if not name or not name:find(NAME) then error("bad sample line " .. line) end
      local labels, i = parse_labels(rest, 1)
      local value = rest:sub(i):match("^ (%S+)$")
      if not value then error("bad sample line " .. line) end
      local fam = fams[name] and name
      if not fam then
        local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$")
        if base and fams[base] and fams[base].type == "histogram" then fam = base end
      end
      if not fam then error("sample " .. name .. " has no TYPE before it") end
      if fam ~= current then error("samples of " .. fam .. " are not together") end
      table.insert(fams[fam].samples, { name = name, labels = labels, value = parse_value(value) })
    end
  end
  for name, f in pairs(fams) do
    if not f.help then error(name .. " has no HELP") end
    if not f.type then error(name .. " has no TYPE") end
  end
  return fams
end

local function key_without(labels, drop)
  local keys = {}
  for k, v in pairs(labels) do if k ~= drop then keys[#keys + 1] = k .. "=" .. v end end
  table.sort(keys)
  return table.concat(keys, ",")
end

-- Histograms: per label set, buckets ascending in le and cumulative, +Inf last and equal to
-- _count, and a _sum.
local function check_histogram(name, f)
  local series = {}
  for _, s in ipairs(f.samples) do
    local k = key_without(s.labels, "le")
    series[k] = series[k] or { buckets = {} }
    if s.name == name .. "_bucket" then
      t.ok(s.labels.le, "bucket without le")
      table.insert(series[k].buckets, { le = parse_value(s.labels.le), n = s.value })
    elseif s.name == name .. "_sum" then series[k].sum = s.value
    elseif s.name == name .. "_count" then series[k].count = s.value
    else error("stray sample " .. s.name .. " in histogram " .. name) end
  end
  for k, s in pairs(series) do
    t.ok(#s.buckets > 0, name .. "{" .. k .. "} has buckets")
    for i = 2, #s.buckets do
      t.ok(s.buckets[i].le > s.buckets[i - 1].le, "buckets in increasing le")
      t.ok(s.buckets[i].n >= s.buckets[i - 1].n, "buckets are cumulative")
    end
    t.eq(s.buckets[#s.buckets].le, math.huge, "last bucket is +Inf")
    t.eq(s.buckets[#s.buckets].n, s.count, "+Inf bucket equals _count")
    t.ok(s.sum, name .. " has _sum")
  end
  return series
end

local function value(fams, name, labels)
  for _, s in ipairs(fams[name] and fams[name].samples or {}) do
    local all = true
    for k, v in pairs(labels or {}) do if s.labels[k] ~= v then all = false end end
    if all then return s.value end
  end
  return nil
end

t.test("registry text parses back: HELP, TYPE, names, escaping", function()
  local reg = metrics.registry()
  local c = reg:counter("x_events_total", "Events,\nby kind \\ source.", { "kind" })
  local g = reg:gauge("x_temperature_celsius", "A gauge.", {})
  local h = reg:histogram("x_wait_seconds", "A histogram.", { "who" }, { 0.1, 0.5, 1 })
  reg:gauge("x_empty", "No series yet.", { "a" })
  c:inc({ kind = 'quote " backslash \\ newline \n end' }, 2)
  c:inc({ kind = "plain" })
  g:set(nil, -3.25)
  for _, v in ipairs { 0.05, 0.1, 0.3, 0.7, 5 } do h:observe({ who = "a" }, v) end
  h:observe({ who = "b" }, 0.2)
  local text = reg:render()
  local fams = parse(text)
  t.eq(fams.x_events_total.type, "counter")
  t.eq(fams.x_events_total.help, "Events,\\nby kind \\\\ source.", "HELP escapes backslash and newline")
  t.eq(value(fams, "x_events_total", { kind = 'quote " backslash \\ newline \n end' }), 2, "label value round trip")
  t.eq(value(fams, "x_events_total", { kind = "plain" }), 1)
  t.eq(value(fams, "x_temperature_celsius"), -3.25)
  t.eq(fams.x_empty.type, "gauge")
  t.eq(#fams.x_empty.samples, 0)
  local series = check_histogram("x_wait_seconds", fams.x_wait_seconds)
  local a = series["who=a"]
  t.same({ a.buckets[1].n, a.buckets[2].n, a.buckets[3].n, a.buckets[4].n }, { 2, 3, 4, 5 })
  t.eq(a.count, 5)
  t.ok(math.abs(a.sum - 6.15) < 1e-9, "sum " .. a.sum)
  t.eq(series["who=b"].count, 1)
end)

t.test("numbers are written so they read back the same", function()
  t.eq(metrics.number(0.1), "0.1")
  t.eq(metrics.number(0.0025), "0.0025")
  t.eq(metrics.number(3), "3")
  t.eq(metrics.number(3.0), "3")
  t.eq(metrics.number(1 / 3 + 0.0), string.format("%.17g", 1 / 3))
  t.eq(metrics.number(math.huge), "+Inf")
  t.eq(metrics.number(-math.huge), "-Inf")
  t.eq(metrics.number(0 / 0), "NaN")
  for _, v in ipairs { 1e-9, 123456.789, 2 ^ 60, 0.1 + 0.2 } do t.eq(tonumber(metrics.number(v)), v) end
end)

t.test("the registry refuses names against the conventions", function()
  local reg = metrics.registry()
  t.ok(not pcall(reg.counter, reg, "bad name", "x"), "space in a name")
  t.ok(not pcall(reg.counter, reg, "1abc_total", "x"), "leading digit")
  t.ok(not pcall(reg.counter, reg, "mw_restarts", "x"), "a counter without _total")
  t.ok(not pcall(reg.gauge, reg, "g", "x", { "__reserved" }), "label starting with __")
  t.ok(not pcall(reg.histogram, reg, "h_seconds", "x", { "le" }), "le is the histogram's")
  t.ok(not pcall(reg.histogram, reg, "h2_seconds", "x", {}, { 1, 0.5 }), "buckets must increase")
  reg:gauge("twice", "x")
  t.ok(not pcall(reg.gauge, reg, "twice", "x"), "registered twice")
  local c = reg:counter("c_total", "x", { "a" })
  t.ok(not pcall(c.inc, c, {}), "a missing label")
  t.ok(not pcall(c.inc, c, { a = "x" }, -1), "a counter going down")
end)

-- A snapshot like the supervisor's, for the collector.
local function snap(rows)
  local comps = {}
  for i, r in ipairs(rows) do
    comps[i] = { name = r[1], state = r[2], restarts = r.restarts or 0, failures = r.failures or 0,
                 last_failure = r.reason and { reason = r.reason, time = 0 } or nil,
                 heartbeat = r.hb and "http" or nil, heartbeat_latency = r.hb }
  end
  return { stack = "s", components = comps }
end

t.test("mw's metrics from snapshots: up, healthy, restarts, failures by reason, backoff time, latency", function()
  local col = metrics.collector()
  col:sample(snap { { "db", "healthy", hb = 0.002 }, { "web", "starting" } }, 100)
  col:sample(snap { { "db", "healthy", hb = 0.002 }, { "web", "running" } }, 100.5)     -- same latency: not again
  local ch = col:sample(snap { { "db", "backoff", failures = 1, reason = "exited", hb = 0.002 },
                               { "web", "running" } }, 101)
  t.same(ch, { { component = "db", from = "healthy", to = "backoff" } })
  col:sample(snap { { "db", "backoff", failures = 2, reason = "heartbeat", hb = 0.002 }, { "web", "running" } }, 102.5)
  col:sample(snap { { "db", "restarting", failures = 2, reason = "heartbeat", restarts = 1 },
                    { "web", "running" } }, 103)
  col:event("reloaded")
  col:event("reload_failed")
  col:event("reload_failed")
  local text = col:render(snap { { "db", "healthy", failures = 2, reason = "heartbeat", restarts = 1, hb = 0.03 },
                                 { "web", "gave_up", failures = 3, reason = "oom" } },
                          { ["containers/create 201"] = 4, ["containers/start 204"] = 3, ["_ping transport"] = 1 }, 104)
  local fams = parse(text)
  for name in pairs(fams) do t.ok(name:find("^mw_"), name .. " has the mw_ prefix") end
  t.eq(fams.mw_component_up.type, "gauge")
  t.eq(value(fams, "mw_component_up", { component = "db" }), 1)
  t.eq(value(fams, "mw_component_up", { component = "web" }), 0)
  t.eq(value(fams, "mw_component_healthy", { component = "db" }), 1)
  t.eq(value(fams, "mw_component_healthy", { component = "web" }), 0)
  t.eq(fams.mw_restarts_total.type, "counter")
  t.eq(value(fams, "mw_restarts_total", { component = "db" }), 1)
  t.eq(value(fams, "mw_failures_total", { component = "db", reason = "exited" }), 1)
  t.eq(value(fams, "mw_failures_total", { component = "db", reason = "heartbeat" }), 1)
  t.eq(value(fams, "mw_failures_total", { component = "web", reason = "oom" }), 3, "failures first seen count too")
  t.ok(math.abs(value(fams, "mw_backoff_seconds_total", { component = "db" }) - 2) < 1e-9, "2 s in backoff")
  t.eq(value(fams, "mw_backoff_seconds_total", { component = "web" }), nil)
  t.eq(value(fams, "mw_reloads_total", { result = "ok" }), 1)
  t.eq(value(fams, "mw_reloads_total", { result = "error" }), 2)
  t.eq(value(fams, "mw_engine_requests_total", { endpoint = "containers/create", status = "201" }), 4)
  t.eq(value(fams, "mw_engine_requests_total", { endpoint = "_ping", status = "transport" }), 1)
  local h = check_histogram("mw_heartbeat_latency_seconds", fams.mw_heartbeat_latency_seconds)
  t.eq(h["component=db"].count, 2, "one sample per new latency")
  t.ok(math.abs(h["component=db"].sum - 0.032) < 1e-12)
  t.eq(h["component=db"].buckets[2].n, 1, "0.002 is in le=0.0025")
end)

t.test("once the supervisor reports beats, latencies come from them only", function()
  local col = metrics.collector()
  col:beat("db", true, 0.004)
  col:beat("db", false, 0.2)
  col:sample(snap { { "db", "healthy", hb = 0.7 } }, 1)
  local fams = parse(col:render(snap { { "db", "healthy", hb = 0.8 } }, {}, 2))
  local h = check_histogram("mw_heartbeat_latency_seconds", fams.mw_heartbeat_latency_seconds)
  t.eq(h["component=db"].count, 1)
  t.eq(h["component=db"].sum, 0.004)
end)

os.exit(t.run())
