-- A small HTTP/1.1 server on 127.0.0.1 for tests, built on mw.net: each route is a function
-- (req) -> status, body[, headers] or a function(req, conn) that writes the response itself.
local core = require "mw.core"
local net = require "mw.net"

local M = {}

local function read_request(c)
  local buf = ""
  while true do
    local head_end = buf:find("\r\n\r\n", 1, true)
    if head_end then
      local head = buf:sub(1, head_end - 1)
      local method, path = head:match("^(%u+) (%S+)")
      local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength: *(%d+)")) or 0
      local body = buf:sub(head_end + 4)
      while #body < len do
        local d = c:read(5)
        if not d then return nil end
        body = body .. d
      end
      return { method = method, path = path, head = head, body = body }
    end
    local d = c:read(5)
    if not d then return nil end
    buf = buf .. d
  end
end

function M.respond(c, status, body, headers)
  local h = { "HTTP/1.1 " .. status .. " X", "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  c:write(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
end

-- servers still listening: t.run closes them after the cases (a file may keep one across cases)
local live = {}
local has_harness, harness = pcall(require, "t")
if has_harness then
  harness.after(function()
    for s in pairs(live) do s.stop() end
  end)
end

function M.start(routes)
  local srv = assert(net.listen("127.0.0.1", 0))
  local s = { port = srv:port(), hits = 0 }
  s.url = "http://127.0.0.1:" .. s.port
  s.task = core.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      core.spawn(function()
        local req = read_request(c)
        if req then
          s.hits = s.hits + 1
          local route = routes[req.path] or routes[req.path:match("^[^?]*")]
          if not route then
            M.respond(c, 404, "not found\n")
          else
            local status, body, headers = route(req, c)
            if status then M.respond(c, status, body or "", headers) end
          end
        end
        core.sleep(0.005)      -- let the write drain before the close
        c:close()
      end, "httpd-conn")
    end
  end, "httpd")
  function s.stop()
    if not live[s] then return end
    live[s] = nil
    srv:close()
    core.join(s.task)
    s.task = nil      -- a finished task keeps its results anchored while it is referenced
  end
  live[s] = true
  return s
end

return M
