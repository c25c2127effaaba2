-- on_event hooks: the events the supervisor logs that matter to someone outside (a give-up, a
-- failure, a restart, healthy again, the engine away...) become records handed to the stack's
-- or the component's on_event function, which may POST them to a webhook (stdlib mw.webhook).
-- A hook runs in a task of its own, in slices under the policies' budget, with a wall-clock
-- limit, a cap on hooks running at once and on events queued (the oldest is dropped); what it
-- does never reaches supervision: errors are logged once per kind and counted for /metrics.
local core = require "mw.core"
local http = require "mw.http"
local log = require "mw.log"
local usercode = require "mw.usercode"
local webhook = require "mw.webhook"

local M = {}

M.BUDGET = usercode.BUDGET      -- each slice of a hook: the restart policy's budget
M.TIMEOUT = 10                  -- seconds a hook run may take, its posts included
M.MAX_RUNNING = 4               -- hook runs at once
M.MAX_QUEUED = 100              -- events waiting for a run; past it the oldest is dropped
M.MAX_POSTS = 8                 -- webhook.post calls in one run
M.MAX_ANSWER = 64 * 1024        -- bytes of a webhook's answer kept (the rest is not read)
M.CONNECT_TIMEOUT = 5

-- The log events that become hook events, and their `event` name in the record.
M.EVENTS = {
  gave_up = true,        -- the policy gave up: nothing restarts it
  failed = true,         -- a failure; the policy's action follows after its delay
  restarting = true,     -- the policy's action runs now
  stopped = true,        -- ended, and the policy leaves it (a clean exit under on_failure)
  healthy = true,        -- its heartbeat answers (after a start, a restart or a miss)
  start_failed = true,   -- the engine refused to create or start it
  held = true,           -- a heartbeat restart held back (its grace or its dependencies)
  escalate = true,       -- restart_dependents / restart_stack begins
  replace_failed = true, -- a start-first replacement did not become healthy
  roll_stopped = true,   -- a rolling replacement stopped
  policy_error = true,   -- the restart policy failed; the default applied
  engine_away = true,    -- the engine stopped answering (stack-wide)
  engine_back = true,    -- it answers again (stack-wide)
  reloaded = true,       -- the stack file was reloaded (stack-wide)
  reload_failed = true,  -- a reload failed; the running configuration stays (stack-wide)
}

-- The events about a failure: the record says which (reason, exit_code) from the instance.
local FAILURE_EVENTS = { failed = true, gave_up = true, stopped = true, restarting = true, held = true }

-- The log fields copied into the record, when they are plain values.
local FIELDS = { "reason", "exit_code", "action", "delay", "latency" }

local A = {}
A.__index = A

-- ctx: mw.run's context (ctx.stack is the current stack, ctx.sup the supervisor).
function M.start(ctx)
  local self = setmetatable({
    ctx = ctx, queue = {}, head = 1, tail = 0, running = 0, seq = 0, tasks = {},
    wake = core.cond(), warned = {},
    stats = { runs = { ok = 0, error = 0, budget = 0, memory = 0, timeout = 0 }, dropped = 0,
              posts = { ok = 0, failed = 0 } },
  }, A)
  local prev = log.hook
  self.prev_hook = prev
  self.hook = function(...)
    if prev then prev(...) end
    if self.closed then return end
    -- runs inside whatever logged: it only queues, and never fails the caller
    local ok, err = pcall(self.on_log, self, ...)
    if not ok and not self.hook_failed then
      self.hook_failed = true
      io.stderr:write("mw: on_event: queueing an event failed: ", tostring(err), "\n")
    end
  end
  log.hook = self.hook
  self.dispatcher = core.spawn(function() self:dispatch() end, "on_event")
  return self
end

-- The component an event's subject (an instance key such as web-2, or a component) belongs to.
function A:component_of(key)
  if not key then return nil end
  local sup = self.ctx.sup
  local inst = sup and sup.comps and sup.comps[key]
  if inst then return inst.name end
  local stack = self.ctx.stack
  if stack and stack.components[key] then return key end
  return (key:gsub("%-%d+$", ""))
end

-- The hook for a component's events: its own, else the stack's.
function A:hook_for(comp)
  local stack = self.ctx.stack
  if not stack then return nil end
  local def = comp and stack.components[comp]
  return (def and def.on_event) or stack.on_event
end

function A:on_log(level, key, event, msg, fields, time)
  if not M.EVENTS[event] then return end
  local comp = self:component_of(key)
  if not self:hook_for(comp) then return end
  self.seq = self.seq + 1
  local rec = { event = event, level = level, stack = self.ctx.stack.name, component = comp,
                instance = key, message = msg, time = time, seq = self.seq }
  for _, k in ipairs(FIELDS) do
    local v = fields and fields[k]
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" then rec[k] = v end
  end
  local sup = self.ctx.sup
  local inst = key and sup and sup.comps and sup.comps[key]
  if inst then
    rec.state, rec.restarts = inst.state, inst.restarts
    local last = inst.last_failure
    if FAILURE_EVENTS[event] and type(last) == "table" then
      rec.reason = rec.reason or last.reason
      rec.exit_code = rec.exit_code or last.exit_code
    end
  end
  if self.tail - self.head + 1 >= M.MAX_QUEUED then
    self.queue[self.head] = nil
    self.head = self.head + 1
    self.stats.dropped = self.stats.dropped + 1
    self:warn_once("dropped", nil, string.format("on_event: more than %d events waiting for a hook; dropping the oldest", M.MAX_QUEUED))
  end
  self.tail = self.tail + 1
  self.queue[self.tail] = rec
  self.wake:notify()
end

-- A hook's trouble is logged once per kind (then only counted): a hook failing at every event
-- must not flood the log it is reading.
function A:warn_once(kind, key, text)
  if self.warned[kind] then return end
  self.warned[kind] = true
  local counter = kind == "dropped" and "mw_hook_events_dropped_total" or "mw_hook_runs_total"
  log.warn(key, "hook_error", text .. " (said once; " .. counter .. " counts them)", { kind = kind })
end

function A:dispatch()
  while not self.closed do
    while self.head <= self.tail and self.running < M.MAX_RUNNING do
      local rec = self.queue[self.head]
      self.queue[self.head] = nil
      self.head = self.head + 1
      local fn = self:hook_for(rec.component)
      if fn then
        self.running = self.running + 1
        local t
        t = core.spawn(function()
          local ok, err = pcall(self.run, self, fn, rec)
          if not ok then self:warn_once("internal", rec.instance, "on_event: " .. tostring(err)) end
          self.running = self.running - 1
          if t then self.tasks[t] = nil end
          self.wake:notify()
        end, "on_event " .. rec.event)
        self.tasks[t] = true      -- (spawn only queues the task: it has not run yet)
      end
    end
    self.wake:wait(5)
  end
end

local function copy(rec)
  local out = {}
  for k, v in pairs(rec) do out[k] = v end
  return out
end

-- What went wrong in a slice -> kind, text.
local function classify(err)
  local text = usercode.failure_text(err)
  if text:find("budget exceeded", 1, true) then return "budget", text end
  if text:find("out of memory", 1, true) or text:find("not enough memory", 1, true) then return "memory", text end
  return "error", text
end

-- One POST for a hook -> answer | nil, err. The request was built by webhook.post (checked
-- there); it is read again here with type() only, since the hook could have yielded anything.
function A:post(req, deadline)
  if type(req) ~= "table" or type(rawget(req, "url")) ~= "string" then return nil, "bad request" end
  local left = deadline - core.now()
  if left <= 0 then return nil, "timeout" end
  local timeout = rawget(req, "timeout")
  local capped = not (type(timeout) == "number" and timeout > 0 and timeout < left)
  timeout = capped and left or timeout
  local headers = {}
  local given = rawget(req, "headers")
  if type(given) == "table" then
    for k, v in next, given do
      if type(k) == "string" and type(v) == "string" then headers[k] = v end
    end
  end
  local body = rawget(req, "body")
  local res, err = http.request { url = req.url, method = "POST", body = type(body) == "string" and body or "",
    headers = headers, timeout = timeout, connect_timeout = math.min(timeout, M.CONNECT_TIMEOUT),
    max_body = M.MAX_ANSWER }
  if not res then
    self.stats.posts.failed = self.stats.posts.failed + 1
    -- cut by the run's own limit (curl's clock may end it a hair before ours): the run timed out
    local e = tostring(err):lower()
    if capped and (e:find("timeout", 1, true) or e:find("timed out", 1, true)) then return nil, "timeout" end
    return nil, tostring(err)
  end
  local result = (res.status >= 200 and res.status < 300) and "ok" or "failed"
  self.stats.posts[result] = self.stats.posts[result] + 1
  return { status = res.status, body = res.body or "" }
end

-- Runs fn(record) to its end: each stretch between two posts under the budget, the posts by
-- mw, the whole within M.TIMEOUT. -> the result counted (ok, error, budget, memory, timeout).
function A:run(fn, rec)
  local deadline = core.now() + M.TIMEOUT
  local co
  local ok, rok, a, b = core.budget(function(record)
    co = coroutine.create(fn)
    webhook._mark(co)
    return coroutine.resume(co, record)
  end, M.BUDGET, copy(rec))
  local posts = 0
  local kind, text
  while true do
    if not ok then kind, text = classify(rok) break end
    if not rok then kind, text = classify(a) break end
    if coroutine.status(co) == "dead" then break end
    if a ~= webhook.REQUEST then kind, text = "error", "on_event yielded; only webhook.post may wait" break end
    posts = posts + 1
    if posts > M.MAX_POSTS then kind, text = "error", "more than " .. M.MAX_POSTS .. " posts in one run" break end
    local res, err = self:post(b, deadline)
    if self.closed then return end
    if err == "timeout" or core.now() >= deadline then
      kind, text = "timeout", "took longer than " .. log.dur(M.TIMEOUT) break
    end
    ok, rok, a, b = core.budget(function() return coroutine.resume(co, res, err) end, M.BUDGET)
  end
  local result = kind or "ok"
  self.stats.runs[result] = self.stats.runs[result] + 1
  if kind then
    self:warn_once(kind, rec.instance, string.format("on_event hook failed on %s (%s); supervision goes on", rec.event, text))
  end
  return result
end

-- Stops: queued events are dropped, running hooks cancelled. Safe twice.
function A:close()
  if self.closed then return end
  self.closed = true
  if log.hook == self.hook then log.hook = self.prev_hook end
  local me = core.current()
  for t in pairs(self.tasks) do
    local st = t:status()
    if t ~= me and st ~= "done" and st ~= "failed" and st ~= "cancelled" then core.cancel(t) end
  end
  self.tasks = {}
  self.wake:notify()
  local st = self.dispatcher:status()
  if self.dispatcher ~= me and st ~= "done" and st ~= "failed" and st ~= "cancelled" then core.cancel(self.dispatcher) end
  self.wake:close()
end

return M
