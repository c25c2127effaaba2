-- Ready-made autoscale decisions. Each returns a decide(s) function for a component's
-- `autoscale = { min =, max =, every =, decide = ... }`. They are pure functions of the sample
-- s mw passes: s.desired, s.now, s.last_change, s.instances[i] = { cpu (cores), memory (bytes),
-- latency (s), json (the decoded heartbeat body) }, so a reload or a restart of mw keeps them.
local duration = require "mw.duration"

local autoscale = {}

local function dur(v, what)
  local s, err = duration.parse(v)
  if not s then error("mw.autoscale: " .. what .. ": " .. err, 3) end
  return s
end

local function positive(v, what)
  if type(v) ~= "number" or v ~= v or v <= 0 then error("mw.autoscale: " .. what .. " must be a positive number", 3) end
  return v
end

-- The cool-down: after a change, hold still; and step down one instance at a time, so that a
-- short lull does not drop capacity that the next burst needs (no flapping).
local function settle(s, want, o)
  want = math.floor(want + 0.5)
  if want == s.desired then return want end
  if s.last_change and s.now - s.last_change < o.cooldown then return s.desired end
  if want < s.desired then return s.desired - 1 end
  return want
end

local function opts(o)
  o = o or {}
  return { cooldown = dur(o.cooldown or "30s", "cooldown") }
end

-- Keeps each instance's CPU near target (in cores, e.g. 0.5).
function autoscale.target_cpu(o)
  local target = positive((o or {}).target or 0.5, "target")
  local c = opts(o)
  return function(s)
    local total, n = 0, 0
    for _, i in ipairs(s.instances) do
      if i.cpu then total, n = total + i.cpu, n + 1 end
    end
    if n == 0 then return s.desired end
    return settle(s, math.max(1, math.ceil(total / target)), c)
  end
end

-- Keeps the heartbeat latency (the average over instances) near target.
function autoscale.target_latency(o)
  local target = dur((o or {}).target or "50ms", "target")
  local c = opts(o)
  return function(s)
    local total, n = 0, 0
    for _, i in ipairs(s.instances) do
      if i.latency then total, n = total + i.latency, n + 1 end
    end
    if n == 0 then return s.desired end
    return settle(s, math.max(1, math.ceil(s.desired * (total / n) / target)), c)
  end
end

local function field(t, path)
  for part in path:gmatch("[^.]+") do
    if type(t) ~= "table" then return nil end
    t = t[part]
  end
  return tonumber(t)
end

-- Sizes by a counter the instances serve in their JSON (a queue length, say): one instance
-- per `per_instance` units of the total.
function autoscale.counter(o)
  o = o or {}
  if type(o.field) ~= "string" or o.field == "" then error("mw.autoscale.counter: field must name a JSON field", 2) end
  local per = positive(o.per_instance or 100, "per_instance")
  local c = opts(o)
  return function(s)
    local total, seen = 0, false
    for _, i in ipairs(s.instances) do
      local v = field(i.json, o.field)
      if v then total, seen = total + v, true end
    end
    if not seen then return s.desired end
    return settle(s, math.max(1, math.ceil(total / per)), c)
  end
end

return autoscale
