-- `mw inspect`: asks a component's introspection endpoint (its HTTP heartbeat) on the path
-- heartbeats take (127.0.0.1 inside the container's own network namespace, or its port
-- published on 127.0.0.1) and prints the answer, indented when it is JSON on a terminal.
local core = require "mw.core"
local http = require "mw.http"
local probe = require "mw.probe"
local docker = require "mw.docker"
local lookup = require "mw.lookup"
local status = require "mw.cmd_status"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2
local INSPECT_TIMEOUT = 5
local DEFAULT_PATH = "/debug/vars"        -- the seed's introspection path

-- The JSON text of a pretty-printed value, keeping the received order of keys and the
-- exact spelling of numbers: it works on the text, and expects valid JSON.
function M.indent_json(text)
  local out, depth, i, n = {}, 0, 1, #text
  local function newline() out[#out + 1] = "\n" .. string.rep("  ", depth) end
  while i <= n do
    local ch = text:sub(i, i)
    if ch == '"' then
      local j = i + 1
      while true do
        local k = text:find('["\\]', j)
        if not k then j = n break end
        if text:sub(k, k) == "\\" then j = k + 2 else j = k break end
      end
      out[#out + 1] = text:sub(i, j)
      i = j + 1
    elseif ch == "{" or ch == "[" then
      local close = ch == "{" and "}" or "]"
      local k = text:find("%S", i + 1)
      if k and text:sub(k, k) == close then
        out[#out + 1] = ch .. close
        i = k + 1
      else
        depth = depth + 1
        out[#out + 1] = ch
        newline()
        i = i + 1
      end
    elseif ch == "}" or ch == "]" then
      depth = depth - 1
      newline()
      out[#out + 1] = ch
      i = i + 1
    elseif ch == "," then
      out[#out + 1] = ","
      newline()
      i = i + 1
    elseif ch == ":" then
      out[#out + 1] = ": "
      i = i + 1
    elseif ch:find("%s") then
      i = i + 1
    else
      local k = text:find('[%s,:%[%]{}"]', i) or n + 1
      out[#out + 1] = text:sub(i, k - 1)
      i = k
    end
  end
  return table.concat(out) .. "\n"
end

-- The host port a container port is published on, reachable at 127.0.0.1 -> n | nil.
function M.loopback_port(info, port)
  local ports = info and info.NetworkSettings and info.NetworkSettings.Ports
  local bindings = type(ports) == "table" and ports[tostring(port) .. "/tcp"]
  if type(bindings) ~= "table" then return nil end
  for _, binding in ipairs(bindings) do
    local ip = binding.HostIp
    if ip == "127.0.0.1" or ip == "0.0.0.0" or ip == "" or ip == nil then
      return math.tointeger(tonumber(binding.HostPort))
    end
  end
  return nil
end

-- A variable of the container's environment (Config.Env, "K=V" strings) -> value | nil.
local function env_of(info, key)
  for _, pair in ipairs(info and info.Config and info.Config.Env or {}) do
    local name, value = pair:match("^([^=]*)=(.*)$")
    if name == key then return value end
  end
  return nil
end

-- Where a component's introspection endpoint is -> { port = host port, container_port, path }
-- | nil, why. The live row (from a running mw) is the best source, then the stack's
-- definition, then what the container itself says (INTROSPECTION_PORT); the path defaults to
-- the seed's. With via "netns" the container port is enough (no published port needed).
-- With explicit_port (inspect -p PORT), that container port is asked, whatever the heartbeat
-- is; the path is the HTTP heartbeat's, else the seed's.
function M.endpoint(comp, row, def, info, via, explicit_port)
  if explicit_port then return M.explicit(comp, row, def, info, explicit_port, via) end
  local heartbeat
  if def then
    heartbeat = def.heartbeat
  elseif row then
    heartbeat = row.heartbeat and { kind = row.heartbeat, path = row.heartbeat_path } or false
  end
  if heartbeat == false then return nil, "component " .. comp .. " has no heartbeat: there is no endpoint to inspect" end
  if heartbeat and heartbeat.kind ~= "http" then
    return nil, string.format("component %s has a %s heartbeat, not an HTTP endpoint to inspect", comp, heartbeat.kind)
  end
  local path = (row and row.heartbeat_path) or (heartbeat and heartbeat.path) or DEFAULT_PATH
  local port
  if row and row.heartbeat_port and (not info or row.container == info.Id) then
    port = math.tointeger(row.heartbeat_port)
  end
  local container_port = (heartbeat and heartbeat.port) or tonumber(env_of(info, "INTROSPECTION_PORT") or "")
  container_port = container_port and math.tointeger(container_port)
  if not port then
    if not container_port then
      return nil, "component " .. comp .. " has no heartbeat: there is no endpoint to inspect"
    end
    port = M.loopback_port(info, container_port)
    if not port and via ~= "netns" then
      return nil, string.format("component %s: its heartbeat port %s is not published on 127.0.0.1", comp,
        tostring(container_port))
    end
  end
  return { port = port, container_port = container_port, path = path }
end

local MAX_ANSWER = 4 * 1024 * 1024     -- what inspect reads of an answer through a namespace

-- GET path on 127.0.0.1:<container port> inside the container's network namespace ->
-- { status, status_line, body } | nil, why
local function get_in_netns(info, where)
  local ns, err = probe.open_netns(info.State and info.State.Pid, info.Id)
  if not ns then return nil, "cannot enter its network namespace: " .. tostring(err) end
  local res, gerr = probe.get(where.container_port, where.path, INSPECT_TIMEOUT, ns, MAX_ANSWER)
  ns:close()
  if not res then return nil, gerr end
  return res
end

function M.explicit(comp, row, def, info, container_port, via)
  local heartbeat = def and def.heartbeat
  local path = (heartbeat and heartbeat.kind == "http" and heartbeat.path)
    or (not def and row and row.heartbeat == "http" and row.heartbeat_path) or DEFAULT_PATH
  local port = M.loopback_port(info, container_port)
  if not port and via ~= "netns" then
    return nil, string.format("component %s: its port %d is not published on 127.0.0.1 (add it to ports)", comp,
      container_port)
  end
  return { port = port, container_port = container_port, path = path }
end

-- -p PORT: a container port, 1-65535 -> n | nil
function M.port_arg(s)
  local n = s and s:find("^%d+$") and tonumber(s)
  return n and n >= 1 and n <= 65535 and math.tointeger(n) or nil
end

function M.main(args, cli)
  local opts, rest = cli.parse(args, { stack = "value", ["state-dir"] = "value", port = "value", p = "value" })
  if not opts then cli.say(rest) return USAGE end
  local port_text = opts.p or opts.port          -- -p PORT, --port PORT: the container port to ask
  local port = port_text and M.port_arg(port_text)
  if port_text and not port then cli.say("inspect: -p wants a container port (1-65535), got " .. port_text) return USAGE end
  local found, code = lookup.component_args(opts, rest, cli, "inspect",
    "usage: mw inspect [-p PORT] <component> [stack.lua | --stack S]")
  if not found then return code end
  local comp, engine, stack, list, group, target = found.comp, found.engine, found.stack, found.list,
    found.group, found.target
  -- of a scaled component, the first running instance (name one by its key: web-2)
  local ctr = lookup.current(list)
  local _, _, key = lookup.identity(ctr.Labels)
  if ctr.State ~= "running" then
    cli.say(string.format("component %s of stack %s is not running (%s)", comp, stack,
      status.state_text(status.engine_row(ctr, nil, 0))))
    return FAILURE
  end
  local info, ierr = engine:inspect(ctr.Id)
  if not info then cli.say(ierr) return FAILURE end
  -- a held container's ports are published by its network holder (mw.holder)
  local holder = lookup.holder_of(engine, info, stack)
  if holder then info.NetworkSettings = holder.NetworkSettings end

  local live, doc = lookup.live_status(lookup.state_dir(opts), stack)
  local def = target.def
  if not def and doc and type(doc.file) == "string" then
    -- the stack file the (running or last) mw used knows the heartbeat's path
    def = require("mw.stack").load(doc.file)
    if def and def.name ~= stack then def = nil end
  end
  def = def and def.components[group] or nil
  -- the path the running mw's heartbeats take for it, else the one this process may take
  local row = lookup.row_of(live, key)
  local via = row and (row.container == nil or row.container == info.Id) and row.heartbeat_via
  if via ~= "published" then via = probe.choose_path(engine) end
  local where, why = M.endpoint(comp, row, def, info, via, port)
  if not where then cli.say(why) return FAILURE end
  if via == "netns" and not where.container_port then via = "published" end
  if via == "published" and not where.port then
    cli.say(string.format("component %s: its heartbeat port is not published on 127.0.0.1", comp))
    return FAILURE
  end

  -- only ever 127.0.0.1: the container's own loopback, or the host's with its published port
  local url, res, err
  if via == "netns" then
    url = string.format("http://127.0.0.1:%d%s", where.container_port, where.path)
    res, err = get_in_netns(info, where)
    if not res then err = tostring(err) .. " (inside the container's network namespace)" end
  else
    url = string.format("http://127.0.0.1:%d%s", where.port, where.path)
    res, err = http.request { url = url, timeout = INSPECT_TIMEOUT, connect_timeout = INSPECT_TIMEOUT }
  end
  if not res then
    cli.say(string.format("component %s: no answer from %s: %s", comp, url, tostring(err)))
    return FAILURE
  end
  local body = res.body or ""
  if res.status < 200 or res.status >= 300 then
    -- as the original inspect did, the component's own answer is printed: it is often the
    -- explanation (a 404 page, a 500's error); the status line goes to stderr, and exit 1
    if body ~= "" then lookup.write(body:sub(-1) == "\n" and body or (body .. "\n")) end
    io.stdout:flush()
    local line = tostring(res.status_line or ""):gsub("%c", " ")
    if not line:find("^HTTP/") then line = "HTTP " .. res.status end
    cli.say(string.format("component %s: %s answered %s", comp, url, line))
    return FAILURE
  end
  if core.isatty(1) and docker.decode(body) ~= nil then
    lookup.write(M.indent_json(body))
  else
    lookup.write(body)
  end
  return OK
end

return M
