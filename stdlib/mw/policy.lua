-- Restart policies: pure functions from a failure record to an action and a delay.
local duration = require "mw.duration"
local backoff  = require "mw.backoff"

local policy = {}

-- Everything a policy (ours or a user's function) may answer.
policy.actions = {
  restart = true, recreate = true, reconnect = true, restart_dependents = true,
  restart_stack = true, give_up = true, ignore = true, promote = true,
}

-- What a failure calls for when nothing stops it.
local BY_REASON = {
  exited = "restart", oom = "restart", heartbeat = "restart",
  removed = "recreate", disconnected = "reconnect",
}

-- `then` names the escalation once the limit is hit (OTP's rest_for_one and one_for_all).
local ESCALATION = { give_up = "give_up", dependents = "restart_dependents", stack = "restart_stack" }
local ESCALATION_TEXT = {
  give_up = "give up", dependents = "restart its dependents", stack = "restart the stack",
}

local HISTORY_MAX = 50
local DEFAULT_RESET_AFTER = 10
local PREVIEW_MAX = 1000

local data = setmetatable({}, { __mode = "k" })   -- policy object -> its parameters

function policy.is(v) return data[v] ~= nil end

-- The attempt number counts the failures since the component last stayed up for reset_after:
-- a failure after a long run is attempt 1, and so was the last long-running one in history.
local function attempt_of(f, reset_after)
  if (tonumber(f.uptime) or 0) >= reset_after then return 1 end
  local h = type(f.history) == "table" and f.history or {}
  local n = 0
  for i = #h, 1, -1 do
    n = n + 1
    local e = h[i]
    if type(e) == "table" and (tonumber(e.uptime) or 0) >= reset_after then break end
  end
  return n + 1
end

-- The attempt number a policy object would use for a failure record (for status and tests).
function policy.attempt(p, f)
  local d = data[p]
  return attempt_of(f, d and d.reset_after or DEFAULT_RESET_AFTER)
end

local function over_limit(f, limit)
  local now = tonumber(f.time)
  if not limit or not now then return false end
  local since = now - limit.within
  local count = 1
  local h = type(f.history) == "table" and f.history or {}
  for i = 1, #h do
    local e = h[i]
    if type(e) == "table" and (tonumber(e.time) or -math.huge) > since then count = count + 1 end
  end
  return count > limit.restarts
end

-- A failure history keeps the last HISTORY_MAX failures, and beyond them as many as a limit
-- needs: over_limit counts the failure at hand plus every remembered one inside `within`, so a
-- limit of `restarts` needs the last `restarts` failures younger than `within` (an entry older
-- than that never counts again, which bounds the history by the failure rate, not by the limit).
-- limit: { restarts = n, within = seconds } or nil. Drops from the front of h in place.
function policy.trim_history(h, now, limit)
  local excess = #h - HISTORY_MAX
  local drop = 0
  while drop < excess do
    local e = h[drop + 1]
    if limit and #h - drop <= limit.restarts and (tonumber(e.time) or -math.huge) > now - limit.within then break end
    drop = drop + 1
  end
  if drop > 0 then
    local n = #h
    table.move(h, drop + 1, n, 1)
    for i = n - drop + 1, n do h[i] = nil end
  end
  return h
end

-- The limit of a policy object ({ restarts, within }), or nil (no limit, or a function).
function policy.limit_of(p)
  local d = data[p]
  return d and d.limit or nil
end

-- The first-restart rule: attempt 1 (the first failure after a stable run, or the very first)
-- waits first_delay (0 unless the stack file says otherwise), and the backoff starts from the
-- second failure: attempt n >= 2 waits backoff:delay(n - 1). A crash loop still backs off,
-- while a component that ran well is back at the engine's floor (issue 17).
local function delay_of(d, attempt)
  if attempt <= 1 then return d.first_delay end
  return d.backoff:delay(attempt - 1)
end

-- The delay a policy object gives attempt n (for status, the docs and tests).
function policy.delay(p, attempt)
  local d = data[p]
  if not d then error("policy.delay: expected a policy object", 2) end
  return delay_of(d, attempt)
end

local function decide(d, f)
  if type(f) ~= "table" then error("policy: expected a failure record, got " .. type(f), 3) end
  local reason = f.reason
  local attempt = attempt_of(f, d.reset_after)
  if d.kind == "never" then
    if reason == "disconnected" then return "reconnect", delay_of(d, attempt) end
    return "give_up", 0
  end
  if d.kind == "on_failure" and reason == "exited" and f.exit_code == 0 and not f.oom then
    return "ignore", 0
  end
  local action = BY_REASON[reason] or "restart"
  local delay = delay_of(d, attempt)
  -- A reconnect does not restart anything, so it neither counts against nor hits the limit.
  if action ~= "reconnect" and over_limit(f, d.limit) then
    local esc = ESCALATION[d["then"]]
    if esc == "give_up" then return "give_up", 0 end
    return esc, delay
  end
  -- a frozen standby is ready (the component asked for one): promote it now, no backoff
  if f.standby == true and (action == "restart" or action == "recreate") then return "promote", 0 end
  return action, delay
end

local function first_text(d)
  if d.first_delay == 0 then return "first restart at once, then " end
  return "first restart after " .. duration.format(d.first_delay) .. ", then "
end

local function describe(d)
  if d.kind == "never" then
    return "never (give up on any failure; reconnect on disconnect, " .. first_text(d) .. tostring(d.backoff) .. ")"
  end
  local s = string.format("%s, %s%s, reset after %s", d.kind, first_text(d), tostring(d.backoff),
    duration.format(d.reset_after))
  if d.limit then
    s = s .. string.format(", at most %d restart%s in %s then %s", d.limit.restarts,
      d.limit.restarts == 1 and "" or "s", duration.format(d.limit.within),
      ESCALATION_TEXT[d["then"]])
  end
  return s
end

local meta = {
  __name = "mw.policy",
  -- Shared by every policy and kept across reloads: a stack file may not alter it.
  __metatable = "mw.policy",
  __index = function(self, k) return data[self][k] end,
  __newindex = function() error("policy objects are read-only", 2) end,
  __call = function(self, f) return decide(data[self], f) end,
  __tostring = function(self) return describe(data[self]) end,
  __pairs = function(self) return next, data[self], nil end,
}

-- Option checking ---------------------------------------------------------------------------

local DEFAULT_BACKOFF = backoff.exponential { initial = "100ms", factor = 2, max = "30s" }

local function fields_list(allowed)
  local t = {}
  for k in pairs(allowed) do t[#t + 1] = k end
  table.sort(t)
  return table.concat(t, ", ")
end

local function field_name(k)
  if type(k) ~= "string" then return type(k) .. " key" end
  return "'" .. duration.show(k):sub(2, -2) .. "'"
end

local function check(fname, kind, allowed, nargs, args)
  if nargs > 1 then return nil, fname .. ": call it with a dot and one table: " .. fname .. "{...}" end
  if args == nil then args = {} end
  if type(args) ~= "table" then
    return nil, string.format("%s: expected a table of options, got %s", fname, type(args))
  end
  for k in next, args do
    if not allowed[k] then
      return nil, string.format("%s: unknown field %s (valid: %s)", fname, field_name(k), fields_list(allowed))
    end
  end
  local d = { kind = kind, backoff = DEFAULT_BACKOFF, reset_after = DEFAULT_RESET_AFTER, ["then"] = "give_up",
              first_delay = 0 }

  local fd = rawget(args, "first_delay")
  if fd ~= nil then
    local s, err = duration.parse(fd)
    if not s then return nil, fname .. ": field 'first_delay': " .. err end
    d.first_delay = s
  end

  local b = rawget(args, "backoff")
  if b ~= nil then
    if not backoff.is(b) then
      return nil, fname .. ": field 'backoff' must be a backoff from mw.backoff " ..
        "(e.g. backoff.exponential{...}), got " .. type(b)
    end
    d.backoff = b
  end

  local r = rawget(args, "reset_after")
  if r ~= nil then
    local s, err = duration.parse(r)
    if not s then return nil, fname .. ": field 'reset_after': " .. err end
    d.reset_after = s
  end

  local l = rawget(args, "limit")
  if l ~= nil then
    if type(l) ~= "table" then
      return nil, fname .. ": field 'limit' must be a table { restarts = N, within = \"1m\" }"
    end
    for k in next, l do
      if k ~= "restarts" and k ~= "within" then
        return nil, string.format("%s: field 'limit': unknown field %s (valid: restarts, within)", fname, field_name(k))
      end
    end
    local n = rawget(l, "restarts")
    n = type(n) == "number" and math.tointeger(n) or nil
    if not n or n < 0 then return nil, fname .. ": field 'limit.restarts' must be an integer >= 0" end
    local w = rawget(l, "within")
    if w == nil then return nil, fname .. ": field 'limit.within' is required" end
    local s, err = duration.parse(w)
    if not s then return nil, fname .. ": field 'limit.within': " .. err end
    if s <= 0 then return nil, fname .. ": field 'limit.within' must be > 0" end
    d.limit = { restarts = n, within = s }
  end

  -- `then` is a Lua keyword, so a stack file must write ["then"] = ...; on_limit reads better.
  local t = rawget(args, "then")
  local alias = rawget(args, "on_limit")
  if t ~= nil and alias ~= nil then return nil, fname .. ": give either 'then' or 'on_limit', not both" end
  t = t or alias
  if t ~= nil then
    if not ESCALATION[t] then
      return nil, fname .. ": field 'then' must be \"give_up\", \"dependents\" or \"stack\", got " ..
        (type(t) == "string" and duration.show(t) or type(t))
    end
    if not d.limit then return nil, fname .. ": field 'then' needs a 'limit' to act on" end
    d["then"] = t
  end
  return d
end

local function make(d)
  local p = setmetatable({}, meta)
  data[p] = d
  return p
end

local RESTARTING = { backoff = true, first_delay = true, reset_after = true, limit = true, ["then"] = true,
                     on_limit = true }
local NEVER = { backoff = true, first_delay = true, reset_after = true }

local function constructor(kind, allowed)
  local fname = "policy." .. kind
  return function(...)
    local d, err = check(fname, kind, allowed, select("#", ...), (...))
    if not d then error(err, 2) end
    return make(d)
  end
end

policy.always     = constructor("always", RESTARTING)
policy.on_failure = constructor("on_failure", RESTARTING)
policy.never      = constructor("never", NEVER)

policy.default = policy.on_failure {}

-- Results -----------------------------------------------------------------------------------

-- Checks what a policy (usually a user's function) answered: an action name and a delay in
-- seconds (a duration string is accepted). Returns action, delay | nil, message.
function policy.check_result(action, delay)
  if type(action) ~= "string" or not policy.actions[action] then
    return nil, "policy returned an unknown action " ..
      (type(action) == "string" and duration.show(action) or "(" .. type(action) .. ")")
  end
  if delay == nil then delay = 0 end
  local s, err = duration.parse(delay)
  if not s then return nil, "policy returned a bad delay: " .. err end
  return action, s
end

function policy.describe(p)
  if data[p] then return describe(data[p]) end
  if type(p) == "function" then
    -- debug may be missing in some embeddings; the location is only a courtesy.
    local info = debug and debug.getinfo and debug.getinfo(p, "S")
    if info and info.short_src and info.linedefined and info.linedefined > 0 then
      return string.format("custom function (%s:%d)", info.short_src, info.linedefined)
    end
    return "custom function"
  end
  return "not a policy (" .. type(p) .. ")"
end

-- Simulates n consecutive failures of a component that dies at once (uptime 0), the clock
-- advancing by each delay, so a limit shows up where it would bite. Stops at give_up/ignore,
-- after which nothing would restart the component.
-- opts.standby: the component has a warm standby (the `standby` field). A frozen one is ready at
-- the first failure (f.standby == true); after a promotion the next one is prepared in the
-- background (create, start, heartbeat, freeze: a second or more), which a component failing
-- right after each start outruns, so the later failures find none (f.standby == false).
-- Each row: attempt, action (what the policy answered), delay, standby (one was ready), and
-- does: what mw does with it (a `promote` with no frozen standby restarts in place, as
-- Sup:act does).
function policy.preview(p, n, opts)
  if not data[p] and type(p) ~= "function" then
    error("policy.preview: expected a policy or a function, got " .. type(p), 2)
  end
  n = n == nil and 10 or (type(n) == "number" and math.tointeger(n)) or nil
  if not n or n < 1 or n > PREVIEW_MAX then
    error("policy.preview: n must be an integer from 1 to " .. PREVIEW_MAX, 2)
  end
  local has_standby = type(opts) == "table" and opts.standby and true or false
  local rows, history, now = {}, {}, 0
  local ready = has_standby
  for i = 1, n do
    local f = { component = "preview", reason = "exited", exit_code = 1, oom = false, uptime = 0,
                time = now, restarts = i - 1, history = table.move(history, 1, #history, 1, {}),
                standby = ready }
    local action, delay = policy.check_result(p(f))
    if not action then error("policy.preview: " .. delay, 2) end
    local does = action
    if action == "promote" then
      if ready then ready = false else does = "restart" end
    end
    rows[i] = { attempt = i, action = action, delay = delay, standby = f.standby, does = does }
    if action == "give_up" or action == "ignore" then break end
    history[#history + 1] = { time = now, reason = "exited", uptime = 0 }
    policy.trim_history(history, now, policy.limit_of(p))
    now = now + delay
  end
  return rows
end

return policy
