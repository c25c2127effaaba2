-- Prometheus metrics: a small registry that renders the text exposition format (0.0.4), and the
-- collector that turns the supervisor's snapshots, mw's log events and the engine client's call
-- counts into mw's metrics.
local M = {}

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"

-- Seconds; from a loopback probe (about a millisecond) to a probe near its timeout.
M.LATENCY_BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

-- ---------------------------------------------------------------------------------------------
-- the text format

function M.escape_label(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

function M.escape_help(v)
  return (tostring(v):gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

-- The shortest text that reads back as the same number; Go's spelling of the specials.
function M.number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  local s = string.format("%.15g", v)
  if tonumber(s) ~= v then s = string.format("%.17g", v) end
  return s
end

local function label_text(names, values, extra_name, extra_value)
  local parts = {}
  for i, n in ipairs(names) do parts[i] = n .. '="' .. M.escape_label(values[i]) .. '"' end
  if extra_name then parts[#parts + 1] = extra_name .. '="' .. extra_value .. '"' end
  if #parts == 0 then return "" end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- ---------------------------------------------------------------------------------------------
-- families

local Family = {}
Family.__index = Family

-- The series of a label set ({ name = value }), created on first use.
function Family:series(labels)
  labels = labels or {}
  local values = {}
  for i, n in ipairs(self.labels) do
    local v = labels[n]
    if v == nil then error("metric " .. self.name .. ": label " .. n .. " is missing", 3) end
    values[i] = tostring(v)
  end
  local key = table.concat(values, "\0")
  local s = self.data[key]
  if not s then
    s = { values = values, value = 0 }
    if self.kind == "histogram" then
      s.counts, s.sum, s.count = {}, 0, 0
      for i = 1, #self.buckets do s.counts[i] = 0 end
    end
    self.data[key] = s
  end
  return s
end

function Family:inc(labels, n)
  n = n or 1
  if self.kind == "counter" and n < 0 then error("counter " .. self.name .. " cannot decrease", 2) end
  local s = self:series(labels)
  s.value = s.value + n
end

-- Sets a gauge, or a counter mirrored from a total kept elsewhere.
function Family:set(labels, v)
  self:series(labels).value = v
end

-- One observation v into the histogram series s (of a family with these buckets).
local function observe_in(s, buckets, v)
  for i, le in ipairs(buckets) do
    if v <= le then s.counts[i] = s.counts[i] + 1 break end
  end
  s.sum = s.sum + v
  s.count = s.count + 1
end

function Family:observe(labels, v)
  observe_in(self:series(labels), self.buckets, v)
end

function Family:get(labels)
  local s = self:series(labels)
  if self.kind == "histogram" then return s.count, s.sum end
  return s.value
end

-- Drops every series (for values recomputed at each scrape).
function Family:reset() self.data = {} end

function Family:render(out)
  out[#out + 1] = "# HELP " .. self.name .. " " .. M.escape_help(self.help)
  out[#out + 1] = "# TYPE " .. self.name .. " " .. self.kind
  local keys = {}
  for k in pairs(self.data) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local s = self.data[k]
    if self.kind == "histogram" then
      local cum = 0
      for i, le in ipairs(self.buckets) do
        cum = cum + s.counts[i]
        out[#out + 1] = self.name .. "_bucket" .. label_text(self.labels, s.values, "le", M.number(le)) .. " " .. cum
      end
      out[#out + 1] = self.name .. "_bucket" .. label_text(self.labels, s.values, "le", "+Inf") .. " " .. s.count
      out[#out + 1] = self.name .. "_sum" .. label_text(self.labels, s.values) .. " " .. M.number(s.sum)
      out[#out + 1] = self.name .. "_count" .. label_text(self.labels, s.values) .. " " .. s.count
    else
      out[#out + 1] = self.name .. label_text(self.labels, s.values) .. " " .. M.number(s.value)
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- the registry

local Registry = {}
Registry.__index = Registry

function M.registry()
  return setmetatable({ families = {}, order = {} }, Registry)
end

local function add(self, kind, name, help, labels, buckets)
  if type(name) ~= "string" or not name:find(NAME) then error("bad metric name " .. tostring(name), 3) end
  if self.families[name] then error("metric " .. name .. " registered twice", 3) end
  -- the conventions: a counter ends in _total; "le" is a histogram's own label; "__" is reserved
  if kind == "counter" and not name:find("_total$") then error("counter " .. name .. " must end in _total", 3) end
  for _, l in ipairs(labels or {}) do
    if not l:find(LABEL) or l:find("^__") or l == "le" then error("bad label name " .. l .. " for " .. name, 3) end
  end
  local f = setmetatable({ kind = kind, name = name, help = help, labels = labels or {}, data = {},
                           buckets = buckets }, Family)
  if buckets then
    for i = 2, #buckets do
      if buckets[i] <= buckets[i - 1] then error("buckets of " .. name .. " must increase", 3) end
    end
  end
  self.families[name] = f
  self.order[#self.order + 1] = f
  return f
end

function Registry:counter(name, help, labels) return add(self, "counter", name, help, labels) end
function Registry:gauge(name, help, labels) return add(self, "gauge", name, help, labels) end
function Registry:histogram(name, help, labels, buckets)
  return add(self, "histogram", name, help, labels, buckets or M.LATENCY_BUCKETS)
end

function Registry:render()
  local out = {}
  for _, f in ipairs(self.order) do f:render(out) end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- ---------------------------------------------------------------------------------------------
-- mw's metrics

local UP = { running = true, healthy = true, starting = true, unhealthy = true }

local Collector = {}
Collector.__index = Collector

function M.collector()
  local reg = M.registry()
  local self = setmetatable({ reg = reg, seen = {}, beats_live = false }, Collector)
  self.up = reg:gauge("mw_component_up", "Whether the component's container is up (1) or not (0).", { "component" })
  self.healthy = reg:gauge("mw_component_healthy",
    "Whether the component is healthy: its heartbeat answers, or it runs and has no heartbeat.", { "component" })
  self.restarts = reg:counter("mw_restarts_total", "Restarts mw made of the component.", { "component" })
  self.failures = reg:counter("mw_failures_total", "Failures of the component, by reason.", { "component", "reason" })
  self.latency = reg:histogram("mw_heartbeat_latency_seconds", "Latency of the component's answered heartbeats.",
    { "component" })
  self.backoff = reg:counter("mw_backoff_seconds_total",
    "Time the component spent waiting in backoff before a restart.", { "component" })
  self.reloads = reg:counter("mw_reloads_total", "Reloads of the stack file, by result.", { "result" })
  self.engine = reg:counter("mw_engine_requests_total",
    "Requests mw made to the Docker Engine API, by endpoint and HTTP status.", { "endpoint", "status" })
  self.api_requests = reg:counter("mw_api_requests_total", "Requests to mw's own API, by endpoint and HTTP status.",
    { "endpoint", "code" })
  self.hook_runs = reg:counter("mw_hook_runs_total",
    "Runs of on_event hooks, by result (ok, error, budget, memory, timeout).", { "result" })
  self.hook_posts = reg:counter("mw_hook_posts_total", "Webhook posts made by on_event hooks, by result (ok: a 2xx answer).",
    { "result" })
  self.hook_dropped = reg:counter("mw_hook_events_dropped_total",
    "Events dropped because too many were waiting for an on_event hook.")
  self.event_clients = reg:gauge("mw_api_event_clients", "Clients following mw's /api/events stream now.")
  self.event_clients:set(nil, 0)
  -- both results show from the start, so rate() works on the first reload
  self.reloads:inc({ result = "ok" }, 0)
  self.reloads:inc({ result = "error" }, 0)
  return self
end

-- Takes one supervisor snapshot at monotonic time `now`: failures since the last one (by the
-- reason of the latest), time in backoff, and — until the supervisor reports each beat —
-- heartbeat latency whenever it changed. Returns the components whose state changed, as
-- { { component =, from =, to = } ... }.
function Collector:sample(snap, now)
  local changes = {}
  local present = {}
  for _, row in ipairs(snap and snap.components or {}) do
    local name = row.name
    present[name] = true
    local prev = self.seen[name]
    local failures = tonumber(row.failures) or 0
    local before = prev and prev.failures or 0
    if failures > before then
      local reason = type(row.last_failure) == "table" and row.last_failure.reason or "unknown"
      self.failures:inc({ component = name, reason = reason }, failures - before)
    end
    if prev and prev.state == "backoff" then self.backoff:inc({ component = name }, math.max(0, now - prev.at)) end
    local lat = tonumber(row.heartbeat_latency)
    if not self.beats_live and lat and (not prev or lat ~= prev.latency) then
      self.latency:observe({ component = name }, lat)
    end
    if prev and prev.state ~= row.state then
      changes[#changes + 1] = { component = name, from = prev.state, to = row.state }
    end
    self.seen[name] = { failures = failures, state = row.state, at = now, latency = lat }
  end
  for name in pairs(self.seen) do
    if not present[name] then self.seen[name] = nil end
  end
  return changes
end

-- One heartbeat, as the supervisor reports it (its on_beat hook): exact latencies from then on.
function Collector:beat(component, ok, latency)
  self.beats_live = true
  if ok and type(latency) == "number" then
    -- one series per component, looked up once: a beat is 100 a second at 100 components
    local fam = self.latency
    local cache = self.latency_series
    if not cache or cache.data ~= fam.data then cache = { data = fam.data, by = {} } self.latency_series = cache end
    local s = cache.by[component]
    if not s then s = fam:series({ component = component }) cache.by[component] = s end
    observe_in(s, fam.buckets, latency)
  end
end

-- An event mw logged (only reloads count here; the rest comes from snapshots).
function Collector:event(event)
  if event == "reloaded" then self.reloads:inc({ result = "ok" })
  elseif event == "reload_failed" then self.reloads:inc({ result = "error" }) end
end

-- The exposition text: a last sample, then the values read at scrape time.
-- calls: the engine client's { ["containers/create 201"] = n, ... }; hooks: mw.alerts's stats
-- { runs = { result = n }, posts = { result = n }, dropped = n } (nil: no hooks).
function Collector:render(snap, calls, now, hooks)
  self:sample(snap, now)
  if hooks then
    for result, n in pairs(hooks.runs) do self.hook_runs:set({ result = result }, n) end
    for result, n in pairs(hooks.posts) do self.hook_posts:set({ result = result }, n) end
    self.hook_dropped:set(nil, hooks.dropped)
  end
  self.up:reset()
  self.healthy:reset()
  for _, row in ipairs(snap and snap.components or {}) do
    local l = { component = row.name }
    self.up:set(l, UP[row.state] and 1 or 0)
    local healthy = row.state == "healthy" or (row.state == "running" and not row.heartbeat)
    self.healthy:set(l, healthy and 1 or 0)
    self.restarts:set(l, tonumber(row.restarts) or 0)
  end
  self.engine:reset()
  for key, n in pairs(calls or {}) do
    local endpoint, status = tostring(key):match("^(.-) (%S+)$")
    if endpoint then self.engine:set({ endpoint = endpoint, status = status }, n) end
  end
  return self.reg:render()
end

return M
