-- The container create body, built from a friendly description: part of mw.docker (the one
-- owner of the engine's JSON shapes), kept apart because it is long. docker.container_spec is
-- engine_spec.container; "notes §N" cites /work/shared/notes/docker-engine-api.md.
local json = require "mw.json"
local secret = require "mw.secret"

local engine_spec = {}

local array, object, is_sequence = json.array, json.object, json.is_sequence

local function env_list(env)
  local list = array()
  if env == nil then return list end
  if is_sequence(env) then
    for i, s in ipairs(env) do list[i] = s end
    return list
  end
  local keys = {}
  for k in pairs(env) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local v = env[k]
    if secret.is(v) then v = secret.reveal(v) end     -- only the engine sees a secret's value
    list[i] = k .. "=" .. tostring(v)
  end
  return list
end

local function command(v, what)
  if v == nil then return nil end
  if type(v) == "string" then return array { "/bin/sh", "-c", v } end
  if type(v) ~= "table" then error("container_spec: " .. what .. " wants a list or a string", 3) end
  local list = array()
  for i, s in ipairs(v) do list[i] = tostring(s) end
  return list
end

local SPEC_FIELDS = {
  image = true, cmd = true, entrypoint = true, env = true, labels = true, network = true,
  aliases = true, ports = true, hostname = true, user = true, workdir = true, tty = true,
  stop_signal = true, stop_timeout = true, mounts = true, memory = true, nano_cpus = true,
  init = true, read_only = true, extra_hosts = true, healthcheck = true, cap_add = true,
  cap_drop = true, shm_size = true, ulimits = true, privileged = true, devices = true, gpus = true,
  sysctls = true, dns = true, dns_search = true, dns_opt = true, security_opt = true, ipc = true,
  pid = true, group_add = true, oom_score_adj = true, memory_reservation = true, logging = true,
  network_mode = true,
}

local function strings(list)
  local out = array()
  for i, s in ipairs(list) do out[i] = s end
  return out
end

local function string_map(m)
  local out = object()
  for k, v in pairs(m or {}) do out[k] = tostring(v) end
  return out
end

-- Builds a container create body from a friendly description (see the brief in the module
-- header). Follows notes §2: ExposedPorts and PortBindings both (a binding whose port is
-- not exposed is silently ignored up to 28.x), restart policy "no" and no AutoRemove (mw
-- owns restarts and needs exit codes and logs), NetworkMode set to the one network with a
-- single EndpointsConfig entry (1.41 accepts only one at create).
function engine_spec.container(s)
  for k in pairs(s) do
    if not SPEC_FIELDS[k] then error("container_spec: unknown field " .. tostring(k), 2) end
  end
  if type(s.image) ~= "string" or s.image == "" then error("container_spec: image is required", 2) end
  local labels = object()
  for k, v in pairs(s.labels or {}) do labels[k] = tostring(v) end
  local body = {
    Image = s.image,
    Cmd = command(s.cmd, "cmd"),
    Entrypoint = command(s.entrypoint, "entrypoint"),
    Env = env_list(s.env),
    Labels = labels,
    Hostname = s.hostname,
    User = s.user,
    WorkingDir = s.workdir,
    Tty = s.tty and true or false,
    StopSignal = s.stop_signal,
    StopTimeout = s.stop_timeout,
    Healthcheck = s.healthcheck,
  }
  local host = {
    RestartPolicy = { Name = "no" },
    AutoRemove = false,
    Init = s.init,
    ReadonlyRootfs = s.read_only,
    Memory = s.memory,
    NanoCpus = s.nano_cpus,
  }
  if s.extra_hosts then host.ExtraHosts = array(s.extra_hosts) end
  if s.privileged then host.Privileged = true end
  if s.devices and #s.devices > 0 then
    local devs = array()
    for i, dv in ipairs(s.devices) do
      devs[i] = { PathOnHost = dv.host, PathInContainer = dv.container or dv.host,
                  CgroupPermissions = dv.permissions or "rwm" }
    end
    host.Devices = devs
  end
  if s.gpus then    -- as `docker run --gpus` sends it (API 1.40+: HostConfig.DeviceRequests)
    local caps = array { strings(s.gpus.capabilities or { "gpu" }) }
    host.DeviceRequests = array { {
      Driver = s.gpus.driver or "", Count = s.gpus.ids and 0 or (s.gpus.count or -1),
      DeviceIDs = s.gpus.ids and strings(s.gpus.ids) or nil, Capabilities = caps,
      Options = string_map(s.gpus.options),
    } }
  end
  if s.sysctls and next(s.sysctls) then host.Sysctls = string_map(s.sysctls) end
  if s.dns and #s.dns > 0 then host.Dns = strings(s.dns) end
  if s.dns_search and #s.dns_search > 0 then host.DnsSearch = strings(s.dns_search) end
  if s.dns_opt and #s.dns_opt > 0 then host.DnsOptions = strings(s.dns_opt) end
  if s.security_opt and #s.security_opt > 0 then host.SecurityOpt = strings(s.security_opt) end
  if s.group_add and #s.group_add > 0 then host.GroupAdd = strings(s.group_add) end
  host.IpcMode = s.ipc
  host.PidMode = s.pid
  host.OomScoreAdj = s.oom_score_adj
  host.MemoryReservation = s.memory_reservation
  if s.logging then host.LogConfig = { Type = s.logging.driver, Config = string_map(s.logging.options) } end
  if s.cap_add and #s.cap_add > 0 then host.CapAdd = array(s.cap_add) end
  if s.cap_drop and #s.cap_drop > 0 then host.CapDrop = array(s.cap_drop) end
  if s.shm_size then host.ShmSize = s.shm_size end
  -- ulimits: { nofile = { soft =, hard = } }, sent sorted by name (deterministic bodies)
  if s.ulimits and next(s.ulimits) then
    local names = {}
    for n in pairs(s.ulimits) do names[#names + 1] = n end
    table.sort(names)
    local u = array()
    for i, n in ipairs(names) do u[i] = { Name = n, Soft = s.ulimits[n].soft, Hard = s.ulimits[n].hard } end
    host.Ulimits = u
  end
  if s.ports and #s.ports > 0 then
    local exposed, bindings = object(), object()
    for _, p in ipairs(s.ports) do
      local key = tostring(p.container or error("container_spec: a port needs container", 2))
        .. "/" .. (p.proto or "tcp")
      exposed[key] = object()
      bindings[key] = bindings[key] or array()
      local b = bindings[key]
      b[#b + 1] = {
        HostIp = p.ip or "127.0.0.1",       -- the host reaches containers only on 127.0.0.1
        HostPort = p.host and tostring(p.host) or "", -- "" = ephemeral, known after start
      }
    end
    body.ExposedPorts = exposed
    host.PortBindings = bindings
  end
  if s.mounts then
    local mounts = array()
    for i, m in ipairs(s.mounts) do
      mounts[i] = {
        Type = m.type or "volume", Source = m.source, Target = m.target,
        ReadOnly = m.read_only and true or false,
      }
      if m.type == "tmpfs" then
        mounts[i].Source = nil
        if m.size then mounts[i].TmpfsOptions = { SizeBytes = m.size } end
      end
    end
    host.Mounts = mounts
  end
  if s.network_mode then host.NetworkMode = s.network_mode end
  if s.network then
    host.NetworkMode = s.network
    local aliases = array()
    for i, a in ipairs(s.aliases or {}) do aliases[i] = a end
    body.NetworkingConfig = { EndpointsConfig = { [s.network] = { Aliases = aliases } } }
  end
  body.HostConfig = host
  return body
end

-- Also for exec bodies: Cmd from a list or a string, Env from a map or a list.
engine_spec.command, engine_spec.env_list = command, env_list

return engine_spec
