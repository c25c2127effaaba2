-- `mw run`: connect, take the stack's place in line, supervise, reload on change, and leave
-- the containers running on exit.
local core = require "mw.core"
local signal = require "mw.signal"
local log = require "mw.log"
local docker = require "mw.docker"
local supervisor = require "mw.supervisor"

local M = {}

function M.run(o)
  local s = o.stack
  local engine, err = docker.connect()
  if not engine then
    io.stderr:write("mw: ", err, "\n")
    return 1
  end
  local sigs = signal.watch { "INT", "TERM", "HUP" }
  local ctx = { engine = engine, stack = s, file = o.file, sigs = sigs }

  local sup = supervisor.new { engine = engine, stack = s }
  ctx.sup = sup
  log.info(nil, "start", string.format("stack %s: %d component%s, engine %s (API %s)", s.name, #s.order,
    #s.order == 1 and "" or "s", tostring(engine.version), tostring(engine.api)))
  local ok, serr = sup:start()
  if not ok then
    io.stderr:write("mw: ", tostring(serr), "\n")
    sup:stop()
    sigs:close()
    return 1
  end

  local rc = 0
  while true do
    local name = sigs:wait()
    if name == "HUP" then
      if M.reload then M.reload(ctx) end
    else
      log.info(nil, "stop", "stopping supervision (signal " .. tostring(name) .. "); containers keep running")
      break
    end
  end
  sup:stop()
  sigs:close()
  return rc
end

return M
