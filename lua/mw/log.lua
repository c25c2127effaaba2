-- What mw says while it runs: one line per event worth attention, as text or JSON lines.
local cjson = require "cjson"
local core = require "mw.core"

local log = { format = "text", out = io.stdout, color = false, quiet = false }

local LEVEL_MARK = { info = "", warn = "warning: ", error = "error: " }

local function clock(t)
  local s = math.floor(t)
  return os.date("%H:%M:%S", s) .. string.format(".%03d", math.floor((t - s) * 1000))
end

-- log.event(level, component or nil, event, message[, fields])
function log.event(level, comp, event, msg, fields)
  if log.quiet and level == "info" then return end
  local now = core.time()
  if log.live then                    -- a progress line is showing: an event line replaces it
    log.out:write("\r\027[K")
    log.live = false
  end
  if log.format == "json" then
    local rec = { time = now, level = level, event = event, component = comp, msg = msg }
    for k, v in pairs(fields or {}) do
      if rec[k] == nil then rec[k] = v end
    end
    log.out:write(cjson.encode(rec), "\n")
  else
    local who = comp and (comp .. ": ") or ""
    log.out:write(clock(now), " ", LEVEL_MARK[level] or "", who, msg, "\n")
  end
  log.out:flush()
  if log.hook then log.hook(level, comp, event, msg, fields, now) end
end

-- Progress (build steps): one live line rewritten in place on a terminal, plain lines otherwise.
function log.progress(comp, msg)
  if log.format == "text" and core.isatty(1) and log.out == io.stdout then
    local line = clock(core.time()) .. " " .. (comp and (comp .. ": ") or "") .. msg
    log.out:write("\r\027[K", line:sub(1, 160))
    log.out:flush()
    log.live = true
  else
    log.event("info", comp, "progress", msg)
  end
end

function log.info(comp, event, msg, fields) log.event("info", comp, event, msg, fields) end
function log.warn(comp, event, msg, fields) log.event("warn", comp, event, msg, fields) end
function log.error(comp, event, msg, fields) log.event("error", comp, event, msg, fields) end

-- "1.2s", "350ms", "3m04s": how long something took or waits, for humans
function log.dur(sec)
  if sec == nil then return "?" end
  if sec < 1 then return string.format("%dms", math.floor(sec * 1000 + 0.5)) end
  if sec < 60 then return string.format("%.1fs", sec) end
  if sec < 3600 then return string.format("%dm%02ds", sec // 60, math.floor(sec % 60)) end
  return string.format("%dh%02dm", sec // 3600, math.floor(sec % 3600) // 60)
end

return log
