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

-- BENCH_HB_KEEPALIVE=1: as nginx or Go's net/http, a request asking for keep-alive gets it
-- (the answer says so and the connection stays for the next request); else each closes
local KEEP = os.getenv("BENCH_HB_KEEPALIVE") == "1"
local RESP_KEEP = RESP:gsub("Connection: close", "Connection: keep-alive")

local served = 0
local ports = {}
local function serve(c)
  local buf = ""
  while true do
    local e = buf:find("\r\n\r\n", 1, true)
    if e then
      local keep = KEEP and buf:sub(1, e):lower():find("connection: keep%-alive") ~= nil
      buf = buf:sub(e + 4)
      c:write(keep and RESP_KEEP or RESP)
      served = served + 1
      if not keep then break end
    else
      local d = c:read(600)
      if not d then break end
      buf = buf .. d
    end
  end
  c:close()
end
for i = 1, n do
  local srv = assert(net.listen("127.0.0.1", 0, 128))
  ports[i] = srv:port()
  core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      if KEEP then core.spawn(function() serve(c) end, "conn") else serve(c) end
    end
  end, "listener")
end
assert(fs.write_atomic(portsfile, table.concat(ports, "\n") .. "\n", 420))
core.sleep(secs)
os.exit(0)
