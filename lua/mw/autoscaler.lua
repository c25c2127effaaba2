-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other. This one: the autoscaler (samples each
-- autoscaled component on its period and asks its decide function for a scale).
local core = require "mw.core"
local cjson = require "cjson"
local log = require "mw.log"
local instance = require "mw.instance"
local usercode = require "mw.usercode"

local instances, is_up = instance.instances, instance.is_up
local shown, failure_text = usercode.shown, usercode.failure_text

local Sup = {}

-- ---------------------------------------------------------------------------------------------
-- autoscaling

local SCALE_BUDGET = { instructions = 1e6, seconds = 0.1 }

-- One sample per instance: CPU (cores, from two successive one-shot stats), memory, heartbeat
-- latency and the JSON the instance serves.
function Sup:sample(g)
  local out = {}
  local tasks = {}
  for _, c in ipairs(instances(g)) do
    local row = { index = c.index, state = c.state, latency = c.hb and c.hb.latency }
    out[#out + 1] = row
    if c.hb and c.hb.body then
      local ok, v = pcall(cjson.decode, c.hb.body)
      if ok then row.json = v end
    end
    if c.id and is_up(c) then
      tasks[#tasks + 1] = core.spawn(function()
        local st = self.engine:stats(c.id)
        if not st then return end
        local usage = st.cpu_stats and st.cpu_stats.cpu_usage and st.cpu_stats.cpu_usage.total_usage
        local now = core.now()
        if usage and c.cpu_prev and now > c.cpu_prev.t then
          row.cpu = math.max(0, (usage - c.cpu_prev.usage) / 1e9 / (now - c.cpu_prev.t))
        end
        if usage then c.cpu_prev = { usage = usage, t = now } end
        row.memory = st.memory_stats and st.memory_stats.usage
      end, c.key .. "-stats")
    end
  end
  for _, t in ipairs(tasks) do core.join(t) end
  return out
end

function Sup:autoscale_once(g)
  local a = g.def.autoscale
  local s = { component = g.name, desired = g.desired, min = a.min, max = a.max, now = core.time(),
              last_change = g.last_change, instances = self:sample(g) }
  local ok, n = core.budget(a.decide, SCALE_BUDGET, s)
  if not ok or type(n) ~= "number" or n ~= n then
    log.warn(g.name, "autoscale_error", "autoscale decide failed (" .. (ok and ("returned " .. shown(n)) or failure_text(n))
      .. "); the scale stays " .. g.desired)
    return
  end
  n = math.max(a.min, math.min(a.max, math.floor(n)))
  if n ~= g.desired and self.groups[g.name] == g then
    log.info(g.name, "autoscale", string.format("autoscale: %d -> %d instances", g.desired, n),
      { from = g.desired, to = n })
    g.autoscaled = true
    g.last_change = core.time()
    self:scale(g, n)
  end
end

-- One task for every autoscaled component: each is sampled on its own period.
function Sup:autoscaler()
  self.autoscale_wake = core.cond()
  return self:spawn("autoscale", function()
    local due = {}
    while not self.stopping do
      local now = core.now()
      local next_due
      for name, g in pairs(self.groups) do
        local a = g.def.autoscale
        if a then
          due[name] = math.min(due[name] or math.huge, now + a.every)   -- a reload may shorten it
          if now >= due[name] then
            due[name] = now + a.every
            self:autoscale_once(g)
          end
          next_due = math.min(next_due or math.huge, due[name])
        else
          due[name] = nil
        end
      end
      -- asleep until the next group is due, or for good while none autoscales (a reload wakes it)
      self.autoscale_wake:wait(next_due and math.max(0.001, next_due - core.now()) or -1)
    end
  end)
end

return Sup
