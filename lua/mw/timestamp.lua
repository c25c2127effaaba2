-- The engine's timestamps ("2026-11-30T01:02:03.123456789Z") as epoch seconds and as keys
-- that order as strings, for the commands that read container states and logs.
local M = {}

-- Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): exact, and free of
-- the local time zone that os.time would apply.
local function days_from_civil(year, month, day)
  year = month <= 2 and year - 1 or year
  local era = (year >= 0 and year or year - 399) // 400
  local year_of_era = year - era * 400
  local day_of_year = (153 * (month + (month > 2 and -3 or 9)) + 2) // 5 + day - 1
  local day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
  return era * 146097 + day_of_era - 719468
end

-- An engine timestamp ("2026-11-30T01:02:03.123456789Z", or with a +hh:mm offset) ->
-- whole seconds since the epoch, nanoseconds | nil. The zero time ("0001-01-01T00:00:00Z",
-- a container never started) is nil.
function M.parse(text)
  local year, month, day, hour, min, sec, frac, zone = tostring(text or ""):match(
    "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)(.*)$")
  if not year then return nil end
  year = tonumber(year)
  if year < 1970 then return nil end
  local secs = days_from_civil(year, tonumber(month), tonumber(day)) * 86400 + tonumber(hour) * 3600
    + tonumber(min) * 60 + tonumber(sec)
  local sign, zone_h, zone_m = zone:match("^([+-])(%d%d):?(%d%d)$")
  if sign then
    local offset = tonumber(zone_h) * 3600 + tonumber(zone_m) * 60
    secs = sign == "+" and secs - offset or secs + offset
  end
  local nanos = tonumber(((frac or "") .. "000000000"):sub(1, 9))
  return math.tointeger(secs), math.tointeger(nanos)
end

-- An engine timestamp -> epoch seconds as a float | nil.
function M.epoch(text)
  local secs, nanos = M.parse(text)
  if not secs then return nil end
  return secs + nanos / 1e9
end

-- A log line's timestamp as a key that orders correctly as a string, and as the "since"
-- the logs endpoint takes (seconds with nanoseconds) -> key, since | nil.
function M.log_key(text)
  local secs, nanos = M.parse(text)
  if not secs then return nil end
  local since = string.format("%d.%09d", secs, nanos)
  return string.format("%012d.%09d", secs, nanos), since
end

-- The same key and since for a moment given as epoch seconds (a float).
function M.key_of(epoch)
  local secs = math.floor(epoch)
  local nanos = math.floor((epoch - secs) * 1e9)
  return string.format("%012d.%09d", secs, nanos), string.format("%d.%09d", secs, nanos)
end

return M
