-- Durations in stack files: strings such as "250ms" or "1m30s", or numbers of seconds.
-- mw.text is mw's own module: a stack file cannot require it, but this module may.
local text = require "mw.text"

local duration = {}

local UNITS = { h = 3600, m = 60, s = 1, ms = 1e-3, us = 1e-6, ns = 1e-9 }
-- Units must come largest first ("1m30s", not "30s1m") so a typo cannot add up silently.
local RANK = { h = 1, m = 2, s = 3, ms = 4, us = 5, ns = 6 }
local HINT = ' (use e.g. "500ms", "2s", "1m30s")'

-- Quotes a user value for a one-line message: control and non-UTF-8 bytes become \xNN,
-- long values are cut, so a message never carries a newline or megabytes of text.
local function show(v)
  if type(v) ~= "string" then return tostring(v) end
  local s = text.escape(v:sub(1, 40), '"\\', text.hex)
  return '"' .. s .. (#v > 40 and '..."' or '"')
end

local function bad(v) return nil, "bad duration " .. show(v) .. HINT end

-- Longer than any sensible delay, and far below where float seconds lose precision.
duration.MAX = 100 * 365 * 86400

function duration.parse(v)
  local tv = type(v)
  if tv == "number" then
    -- v ~= v is NaN; the comparisons catch the infinities and negatives.
    if v ~= v or v < 0 or v == math.huge then return bad(v) end
    if v > duration.MAX then return nil, string.format("duration %s is too long (at most 100 years)", show(v)) end
    return v
  elseif tv ~= "string" then
    return nil, "bad duration: must be a string or a number, got " .. tv
  end
  if v == "0" then return 0 end
  if #v == 0 or #v > 64 then return bad(v) end
  local total, pos, last = 0, 1, 0
  while pos <= #v do
    local num, unit, nxt = v:match("^([%d%.]+)(%a+)()", pos)
    if not num or not (num:find("^%d+%.?%d*$") or num:find("^%.%d+$")) then return bad(v) end
    local rank = RANK[unit]
    if not rank or rank <= last then return bad(v) end
    total = total + (tonumber(num) + 0.0) * UNITS[unit]    -- floats: no integer wrap-around
    last, pos = rank, nxt
  end
  if total ~= total or total == math.huge then return bad(v) end
  if total > duration.MAX then
    return nil, string.format("duration %s is too long (at most 100 years)", show(v))
  end
  return total
end

-- Up to three decimals, without trailing zeros: 1.5, 250, 0.125.
local function num(x)
  local s = string.format("%.3f", x):gsub("0+$", ""):gsub("%.$", "")
  return s
end

function duration.format(seconds)
  if type(seconds) ~= "number" then
    error("duration.format: expected a number of seconds, got " .. type(seconds), 2)
  end
  local s = seconds
  if s ~= s then return "NaN" end
  if s == math.huge then return "inf" end
  if s < 0 then return "-" .. duration.format(-s) end
  if s == 0 then return "0s" end
  -- Round to the microsecond so float noise (0.1 + 0.2) does not leak into the text.
  s = math.floor(s * 1e6 + 0.5) / 1e6
  if s == 0 then return num(seconds * 1e9) .. "ns" end
  if s < 1e-3 then return num(s * 1e6) .. "us" end
  if s < 1 then
    local ms = num(s * 1e3)
    if ms ~= "1000" then return ms .. "ms" end
    s = 1
  end
  if s < 60 then return num(s) .. "s" end
  local h = math.floor(s / 3600)
  local m = math.floor((s - h * 3600) / 60)
  local rest = s - h * 3600 - m * 60
  local out = {}
  if h > 0 then out[#out + 1] = string.format("%.0fh", h) end
  if m > 0 then out[#out + 1] = string.format("%.0fm", m) end
  if rest > 0 then out[#out + 1] = num(rest) .. "s" end
  return table.concat(out)
end

-- Shared with the other stdlib modules so every message quotes values the same way.
duration.show = show

return duration
