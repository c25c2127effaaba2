-- The endpoints for benchmark 7: N HTTP listeners on 127.0.0.1 (ephemeral ports, one task each
-- serving one connection at a time), each answering any request with a small JSON body and
-- closing, as busybox httpd does. Writes the ports, one a line, to PORTSFILE; stops after SECS.
-- usage: mw script tests/bench/hbserver.lua N PORTSFILE SECS
local core = require "mw.core"
local net = require "mw.net"
local fs = require "mw.fs"

local n, portsfile, secs = ...
n, secs = tonumber(n), tonumber(secs) or 600
local RESP = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
  .. "Connection: close\r\n\r\n{\"ok\":true}\n"

local served = 0
local ports = {}
for i = 1, n do
  local srv = assert(net.listen("127.0.0.1", 0, 128))
  ports[i] = srv:port()
  core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      local buf = ""
      while not buf:find("\r\n\r\n", 1, true) do
        local d = c:read(2)
        if not d then break end
        buf = buf .. d
      end
      if buf:find("\r\n\r\n", 1, true) then
        c:write(RESP)
        served = served + 1
      end
      c:close()
    end
  end, "listener")
end
assert(fs.write_atomic(portsfile, table.concat(ports, "\n") .. "\n", 420))
core.sleep(secs)
os.exit(0)
