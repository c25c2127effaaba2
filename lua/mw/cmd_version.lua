-- `mw version`: the versions of mw, Lua, libuv, libcurl and the engine (when one answers).
local core = require "mw.core"

local M = {}

local OK = 0

function M.main(_, cli)
  local http = require "mw.http"
  local docker = require "mw.docker"
  local versions = core.versions()
  print("mw " .. cli.VERSION)
  print(string.format("Lua %s, libuv %s, libcurl %s", versions.lua:gsub("^Lua ", ""), versions.uv,
    http.curl_version()))
  local engine, err, code = docker.connect()
  if engine then
    print(string.format("engine %s at %s, API %s", tostring(engine.version), tostring(engine.where),
      tostring(engine.api)))
  else
    print("engine: none (" .. tostring(docker.explain(err, code)) .. ")")
  end
  return OK
end

return M
