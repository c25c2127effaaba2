-- The supervisor's autoscaler: samples each autoscaled component on its period and asks its
-- decide function for a scale.
-- Methods of the supervisor: a table that mw.supervisor copies into its one class, Sup, so
-- `self` is the supervisor and every method may call any other; `inst` is an instance (its
-- fields are listed in mw.instance.new) and `group` a component's instances.
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
function Sup:sample(group)
  local out = {}
  local tasks = {}
  for _, inst in ipairs(instances(group)) do
    local row = { index = inst.index, state = inst.state, latency = inst.hb and inst.hb.latency }
    out[#out + 1] = row
    if inst.hb and inst.hb.body then
      local ok, v = pcall(cjson.decode, inst.hb.body)
      if ok then row.json = v end
    end
    if inst.id and is_up(inst) then
      tasks[#tasks + 1] = core.spawn(function()
        local st = self.engine:stats(inst.id)
        if not st then return end
        local usage = st.cpu_stats and st.cpu_stats.cpu_usage and st.cpu_stats.cpu_usage.total_usage
        local now = core.now()
        if usage and inst.cpu_prev and now > inst.cpu_prev.t then
          row.cpu = math.max(0, (usage - inst.cpu_prev.usage) / 1e9 / (now - inst.cpu_prev.t))
        end
        if usage then inst.cpu_prev = { usage = usage, t = now } end
        row.memory = st.memory_stats and st.memory_stats.usage
      end, inst.key .. "-stats")
    end
  end
  for _, t in ipairs(tasks) do core.join(t) end
  return out
end

function Sup:autoscale_once(group)
  local a = group.def.autoscale
  local s = { component = group.name, desired = group.desired, min = a.min, max = a.max, now = core.time(),
              last_change = group.last_change, instances = self:sample(group) }
  local ok, n = core.budget(a.decide, SCALE_BUDGET, s)
  if not ok or type(n) ~= "number" or n ~= n then
    log.warn(group.name, "autoscale_error", "autoscale decide failed (" .. (ok and ("returned " .. shown(n)) or failure_text(n))
      .. "); the scale stays " .. group.desired)
    return
  end
  n = math.max(a.min, math.min(a.max, math.floor(n)))
  if n ~= group.desired and self.groups[group.name] == group then
    log.info(group.name, "autoscale", string.format("autoscale: %d -> %d instances", group.desired, n),
      { from = group.desired, to = n })
    group.autoscaled = true
    group.last_change = core.time()
    self:scale(group, n)
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
      for name, group in pairs(self.groups) do
        local a = group.def.autoscale
        if a then
          due[name] = math.min(due[name] or math.huge, now + a.every)   -- a reload may shorten it
          if now >= due[name] then
            due[name] = now + a.every
            self:autoscale_once(group)
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
