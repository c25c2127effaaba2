-- Backoff shapes for restart policies: each is a pure function from attempt number to delay.
local duration = require "mw.duration"

local backoff = {}

-- The default seed is a fixed constant so that jittered schedules are repeatable in tests and
-- across reloads; backoff.seed(n) changes it for objects made afterwards.
local DEFAULT_SEED = 0x6d77
local default_seed = DEFAULT_SEED
local DEFAULT_MAX = 30
-- Decorrelated jitter is a recurrence; beyond this many attempts the delay stays that of the
-- last one computed, which keeps a call cheap whatever attempt number it is given.
local MAX_RECURRENCE = 10000

-- splitmix64 (Steele, Lea, Flood 2014): the n-th output of a stream depends only on (seed, n),
-- so a jittered delay is a pure function of the object and the attempt. Integer arithmetic in
-- Lua 5.4 wraps modulo 2^64, which is what the algorithm wants.
local GAMMA = 0x9E3779B97F4A7C15
local function mix(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

-- A float in [0, 1) from the top 53 bits.
local function uniform(seed, n)
  return (mix(seed + n * GAMMA) >> 11) * 0x1p-53
end
backoff.uniform = uniform

local data = setmetatable({}, { __mode = "k" })   -- object -> its parameters
local methods = {}

local meta = {
  __name = "mw.backoff",
  -- Objects are shared by policies that outlive a reload; a stack file must not be able to
  -- change one after it was validated, nor the metatable that all of them share.
  __metatable = "mw.backoff",
  -- Methods first: constant{delay = ...} has a parameter named like the method.
  __index = function(self, k)
    local m = methods[k]
    if m ~= nil then return m end
    return data[self][k]
  end,
  __newindex = function() error("backoff objects are read-only", 2) end,
  __tostring = function(self) return data[self].label end,
  __pairs = function(self) return next, methods.params(self), nil end,
}

function backoff.is(v) return data[v] ~= nil end

function methods.delay(self, attempt)
  local d = data[self]
  if not d then error("backoff:delay: called on something that is not a backoff object", 2) end
  if math.type(attempt) ~= "integer" then
    attempt = type(attempt) == "number" and math.tointeger(attempt) or nil
  end
  if not attempt or attempt < 1 then error("backoff:delay: attempt must be an integer >= 1", 2) end
  return d.fn(d, attempt)
end

function methods.params(self)
  local out = {}
  for k, v in pairs(data[self]) do
    if k ~= "fn" and k ~= "memo" and k ~= "label" then out[k] = v end
  end
  return out
end

-- Option checking ---------------------------------------------------------------------------

local function check_options(fname, args, nargs, allowed)
  if nargs > 1 then
    return nil, fname .. ": call it with a dot and one table: " .. fname .. "{...}"
  end
  if args == nil then args = {} end
  if type(args) ~= "table" then
    return nil, string.format("%s: expected a table of options, got %s", fname, type(args))
  end
  local known = {}
  for _, k in ipairs(allowed) do known[k] = true end
  -- next, not pairs: the table comes from a stack file and may carry a __pairs of its own.
  for k in next, args do
    if not known[k] then
      return nil, string.format("%s: unknown field %s (valid: %s)", fname,
        type(k) == "string" and ("'" .. duration.show(k):sub(2, -2) .. "'") or tostring(type(k)) .. " key",
        table.concat(allowed, ", "))
    end
  end
  return args
end

local function dur(fname, args, field, default, min_exclusive)
  local v = rawget(args, field)
  if v == nil then
    if default == nil then return nil, string.format("%s: field '%s' is required", fname, field) end
    return default
  end
  local s, err = duration.parse(v)
  if not s then return nil, string.format("%s: field '%s': %s", fname, field, err) end
  if min_exclusive and s <= 0 then
    return nil, string.format("%s: field '%s' must be a duration > 0", fname, field)
  end
  return s
end

local function number(fname, args, field, default, lo, hi, what)
  local v = rawget(args, field)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    return nil, string.format("%s: field '%s' must be a number %s", fname, field, what)
  end
  return v
end

local function seed_of(fname, args)
  local v = rawget(args, "seed")
  if v == nil then return default_seed end
  local i = type(v) == "number" and math.tointeger(v) or nil
  if not i then return nil, string.format("%s: field 'seed' must be an integer", fname) end
  return i
end

local function make(d)
  local obj = setmetatable({}, meta)
  data[obj] = d
  return obj
end

-- Each public constructor checks its options in a body returning (params | nil, err) and
-- raises itself with level 2, so the message points at the stack file's line.
local function public(fname, body)
  return function(...)
    local d, err = body(fname, ...)
    if not d then error(err, 2) end
    return make(d)
  end
end

local F = duration.format

-- Shapes ------------------------------------------------------------------------------------

local function constant_fn(d) return d.delay end

backoff.constant = public("backoff.constant", function(fname, args, ...)
  local err
  args, err = check_options(fname, args, select("#", ...) + 1, { "delay" })
  if not args then return nil, err end
  local delay; delay, err = dur(fname, args, "delay")
  if not delay then return nil, err end
  return { kind = "constant", delay = delay, fn = constant_fn,
           label = string.format("constant(%s)", F(delay)) }
end)

local function linear_fn(d, n) return math.min(d.max, d.initial + d.step * (n - 1)) end

backoff.linear = public("backoff.linear", function(fname, args, ...)
  local err
  args, err = check_options(fname, args, select("#", ...) + 1, { "initial", "step", "max" })
  if not args then return nil, err end
  local initial, step, max
  initial, err = dur(fname, args, "initial"); if not initial then return nil, err end
  step, err = dur(fname, args, "step", initial); if not step then return nil, err end
  max, err = dur(fname, args, "max", math.max(DEFAULT_MAX, initial)); if not max then return nil, err end
  if max < initial then return nil, fname .. ": field 'max' must be >= 'initial'" end
  return { kind = "linear", initial = initial, step = step, max = max, fn = linear_fn,
           label = string.format("linear(%s +%s, max %s)", F(initial), F(step), F(max)) }
end)

local function exponential_fn(d, n)
  local base = math.min(d.max, d.initial * d.factor ^ (n - 1))
  if d.jitter == 0 then return base end
  -- Symmetric jitter around the base (jitter 0.1 is +-10%), still never above max.
  local j = base * (1 + d.jitter * (2 * uniform(d.seed, n) - 1))
  return math.max(0, math.min(d.max, j))
end

backoff.exponential = public("backoff.exponential", function(fname, args, ...)
  local err
  args, err = check_options(fname, args, select("#", ...) + 1,
    { "initial", "factor", "max", "jitter", "seed" })
  if not args then return nil, err end
  local initial, factor, max, jitter, seed
  initial, err = dur(fname, args, "initial", nil, true); if not initial then return nil, err end
  factor, err = number(fname, args, "factor", 2, 1, 1e6, ">= 1"); if not factor then return nil, err end
  max, err = dur(fname, args, "max", math.max(DEFAULT_MAX, initial)); if not max then return nil, err end
  jitter, err = number(fname, args, "jitter", 0, 0, 1, "between 0 and 1"); if not jitter then return nil, err end
  seed, err = seed_of(fname, args); if not seed then return nil, err end
  if max < initial then return nil, fname .. ": field 'max' must be >= 'initial'" end
  local label = string.format("exponential(%s x%g, max %s%s)", F(initial), factor, F(max),
    jitter > 0 and string.format(", jitter %g", jitter) or "")
  return { kind = "exponential", initial = initial, factor = factor, max = max, jitter = jitter,
           seed = seed, fn = exponential_fn, label = label }
end)

-- initial x 1, 2, 3, 5, 8, ...: repeating the first delay (1, 1, 2, ...) would waste a step.
local function fibonacci_fn(d, n)
  local a, b = 1.0, 2.0
  for _ = 2, n do
    a, b = b, a + b
    if a * d.initial >= d.max then return d.max end
  end
  return math.min(d.max, a * d.initial)
end

backoff.fibonacci = public("backoff.fibonacci", function(fname, args, ...)
  local err
  args, err = check_options(fname, args, select("#", ...) + 1, { "initial", "max" })
  if not args then return nil, err end
  local initial, max
  initial, err = dur(fname, args, "initial", nil, true); if not initial then return nil, err end
  max, err = dur(fname, args, "max", math.max(DEFAULT_MAX, initial)); if not max then return nil, err end
  if max < initial then return nil, fname .. ": field 'max' must be >= 'initial'" end
  return { kind = "fibonacci", initial = initial, max = max, fn = fibonacci_fn,
           label = string.format("fibonacci(%s, max %s)", F(initial), F(max)) }
end)

-- AWS "decorrelated jitter": d(n) = min(max, uniform(initial, 3 * d(n-1))), d(0) = initial.
-- The sequence is memoized per object; it depends only on the seed, so memoizing is safe.
local function decorrelated_fn(d, n)
  n = math.min(n, MAX_RECURRENCE)
  local memo = d.memo
  for i = #memo + 1, n do
    local prev = memo[i - 1] or d.initial
    local hi = prev * 3
    memo[i] = math.min(d.max, d.initial + (hi - d.initial) * uniform(d.seed, i))
  end
  return memo[n]
end

backoff.decorrelated = public("backoff.decorrelated", function(fname, args, ...)
  local err
  args, err = check_options(fname, args, select("#", ...) + 1, { "initial", "max", "seed" })
  if not args then return nil, err end
  local initial, max, seed
  initial, err = dur(fname, args, "initial", nil, true); if not initial then return nil, err end
  max, err = dur(fname, args, "max", math.max(DEFAULT_MAX, initial)); if not max then return nil, err end
  seed, err = seed_of(fname, args); if not seed then return nil, err end
  if max < initial then return nil, fname .. ": field 'max' must be >= 'initial'" end
  return { kind = "decorrelated", initial = initial, max = max, seed = seed, memo = {},
           fn = decorrelated_fn,
           label = string.format("decorrelated(%s, max %s)", F(initial), F(max)) }
end)

-- Sets the seed used by objects made without one; returns the previous one. With no argument
-- it restores the built-in constant.
function backoff.seed(n)
  local prev = default_seed
  if n == nil then
    default_seed = DEFAULT_SEED
  else
    local i = type(n) == "number" and math.tointeger(n) or nil
    if not i then error("backoff.seed: expected an integer", 2) end
    default_seed = i
  end
  return prev
end

return backoff
