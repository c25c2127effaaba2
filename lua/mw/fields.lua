-- The fields of a stack's component, written once: each field's default, its validator, how
-- it enters the config hash, how it reaches the container and which compose keys `mw import`
-- makes it from. mw.validate checks, mw.spec hashes and builds the container and mw.import
-- converts by reading this table; tests/unit/test_fields.lua fails when one of them does not
-- handle a field listed here. docs/internals.md "Stack fields" says how to add one.
local policy = require "mw.policy"

local fields = {}

local function fresh() return {} end      -- a default of a new empty table per component

-- Whether a component's network namespace is held by a holder container (mw.holder) that its
-- own container joins: by default, unless it has a network_mode of its own (host, none, another
-- component's), is a job (it runs once) or keeps a standby (which is promoted by its network
-- alias, mw.standby).
function fields.held(c)
  return c.hold_network ~= false and not c.network_mode and not c.job and not c.standby
end

-- Each entry, in the order validation checks them (so the first error reported stays the same):
--   name       the key in a component of a stack file
--   default    the value when absent; a function is called for a fresh value
--   hash       true: the validated value enters the config hash under `name`;
--              a function(c, ctx) -> the value hashed under `name`; false: not hashed, `why_hash` says why.
--              A hashed field that changes makes a reload recreate the component's containers.
--   container  a function(c, d, ctx) that sets keys of the description docker.container_spec
--              takes (never the engine's JSON); false: not part of the container, `why_container` says why
--   compose    the compose keys whose handlers in mw.import make this field; false: none, `why_compose`
-- The validator is validate.field[name] in lua/mw/validate.lua.
-- ctx (from spec.container): image_id, ports (published, with the heartbeat's), mounts(c),
-- own_labels (mw's labels with the hash).
fields.component = {
  { name = "image", hash = function(_, ctx) return ctx.image_id end,
    container = function(_, d, ctx) d.image = ctx.image_id end, compose = { "image" } },
  { name = "build",
    hash = false, why_hash = "the built image's ID is hashed under 'image', so a changed build changes it",
    container = false, why_container = "the image it builds is the container's image ('image')",
    compose = { "build" } },
  { name = "pull", default = "missing",
    hash = false, why_hash = "the image it finds is hashed under 'image'; a pull that brings a newer one changes it",
    container = false, why_container = "when mw pulls the image, not what runs", compose = { "pull_policy" } },
  { name = "command", hash = true, container = function(c, d) d.cmd = c.command end, compose = { "command" } },
  { name = "entrypoint", hash = true, container = function(c, d) d.entrypoint = c.entrypoint end,
    compose = { "entrypoint" } },
  { name = "env", default = fresh, hash = true, container = function(c, d) d.env = c.env end,
    compose = { "environment" } },
  -- env_file: the files' variables, read at load (mw.validate); env wins over them, later
  -- files over earlier ones, as compose does. Each value is a secret (mw.secret), so it is hashed
  -- on its own and never printed; only the container's environment gets it.
  { name = "env_file", default = fresh, hash = function(c) return c.env_file and #c.env_file > 0 and c.env_file or nil end,
    container = function(c, d)
      if not c.env_file or #c.env_file == 0 then return end
      local env = {}
      for _, file in ipairs(c.env_file) do
        for k, v in pairs(file.vars) do env[k] = v end
      end
      for k, v in pairs(d.env or {}) do env[k] = v end
      d.env = env
    end,
    compose = { "env_file" } },
  { name = "depends_on", default = fresh,
    hash = false, why_hash = "start order only; the containers are the same",
    container = false, why_container = "the supervisor starts components in dependency order",
    compose = { "depends_on" } },
  { name = "heartbeat", default = false,
    hash = false, why_hash = "enters only through the port it publishes ('ports') and INTROSPECTION_PORT ('env')",
    container = false, why_container = "the supervisor probes it; its port is published with 'ports'",
    compose = { "healthcheck" } },
  { name = "restart", default = function() return policy.default end,
    hash = false, why_hash = "what the supervisor does after an exit, not what runs",
    container = false, why_container = "mw restarts containers itself; the engine's policy stays \"no\"",
    compose = { "restart", "deploy" } },
  { name = "ports", default = fresh, hash = function(_, ctx) return ctx.ports end,
    container = function(_, d, ctx) d.ports = ctx.ports end, compose = { "ports" } },
  { name = "volumes", default = fresh, hash = true,
    container = function(c, d, ctx) ctx.add_mounts(d, ctx.volume_mounts(c)) end, compose = { "volumes", "tmpfs" } },
  { name = "secrets", default = fresh,
    hash = function(c) return c.secrets and #c.secrets > 0 and c.secrets or nil end,
    container = function(c, d, ctx) ctx.add_mounts(d, ctx.secret_mounts(c)) end, compose = { "secrets" } },
  { name = "configs", default = fresh,
    -- the content's hash, not the path: an edited config file recreates the component on reload
    hash = function(c)
      if not c.configs or #c.configs == 0 then return nil end
      local h = {}
      for i, x in ipairs(c.configs) do h[i] = { name = x.name, target = x.target, content = x.content } end
      return h
    end,
    container = function(c, d, ctx) ctx.add_mounts(d, ctx.config_mounts(c)) end, compose = { "configs" } },
  { name = "scale", default = 1,
    hash = false, why_hash = "how many containers, not what one holds",
    container = false, why_container = "how many containers the supervisor runs", compose = { "scale", "deploy" } },
  { name = "autoscale",
    hash = false, why_hash = "how many containers, not what one holds",
    container = false, why_container = "the supervisor's autoscaler reads it",
    compose = false, why_compose = "compose has no autoscaling" },
  { name = "working_dir", hash = true, container = function(c, d) d.workdir = c.working_dir end,
    compose = { "working_dir" } },
  { name = "user", hash = true, container = function(c, d) d.user = c.user end, compose = { "user" } },
  { name = "labels", default = fresh, hash = true,
    container = function(c, d, ctx)
      local labels = {}
      for k, v in pairs(c.labels or {}) do labels[k] = v end
      for k, v in pairs(ctx.own_labels) do labels[k] = v end      -- mw's own win
      d.labels = labels
    end,
    compose = { "labels" } },
  { name = "hostname", hash = true, container = function(c, d) d.hostname = c.hostname end,
    compose = { "hostname" } },
  { name = "extra_hosts", default = fresh, hash = true,
    container = function(c, d)
      local list = {}
      for _, h in ipairs(c.extra_hosts or {}) do
        list[#list + 1] = type(h) == "table" and (h.host .. ":" .. h.ip) or h
      end
      d.extra_hosts = #list > 0 and list or nil
    end,
    compose = { "extra_hosts" } },
  { name = "stop_signal", hash = true, container = function(c, d) d.stop_signal = c.stop_signal end,
    compose = { "stop_signal" } },
  { name = "stop_grace", default = 10, hash = true,
    container = function(c, d) d.stop_timeout = c.stop_grace and math.ceil(c.stop_grace) or nil end,
    compose = { "stop_grace_period" } },
  { name = "init", default = false, hash = true, container = function(c, d) d.init = c.init or nil end,
    compose = { "init" } },
  { name = "read_only", default = false, hash = true,
    container = function(c, d) d.read_only = c.read_only or nil end, compose = { "read_only" } },
  { name = "cap_add", default = fresh, hash = true, container = function(c, d) d.cap_add = c.cap_add end,
    compose = { "cap_add" } },
  { name = "cap_drop", default = fresh, hash = true, container = function(c, d) d.cap_drop = c.cap_drop end,
    compose = { "cap_drop" } },
  { name = "memory", hash = true, container = function(c, d) d.memory = c.memory end,
    compose = { "mem_limit", "deploy" } },
  { name = "cpus", hash = true,
    container = function(c, d) d.nano_cpus = c.cpus and math.floor(c.cpus * 1e9) or nil end,
    compose = { "cpus", "deploy" } },
  { name = "shm_size", hash = true, container = function(c, d) d.shm_size = c.shm_size end,
    compose = { "shm_size" } },
  { name = "ulimits", default = fresh, hash = true, container = function(c, d) d.ulimits = c.ulimits end,
    compose = { "ulimits" } },
  { name = "privileged", default = false, hash = true,
    container = function(c, d) d.privileged = c.privileged or nil end, compose = { "privileged" } },
  { name = "devices", default = fresh, hash = true, container = function(c, d) d.devices = c.devices end,
    compose = { "devices" } },
  { name = "gpus", hash = true, container = function(c, d) d.gpus = c.gpus end, compose = { "gpus", "deploy" } },
  { name = "sysctls", default = fresh, hash = true, container = function(c, d) d.sysctls = c.sysctls end,
    compose = { "sysctls" } },
  { name = "dns", default = fresh, hash = true, container = function(c, d) d.dns = c.dns end, compose = { "dns" } },
  { name = "dns_search", default = fresh, hash = true, container = function(c, d) d.dns_search = c.dns_search end,
    compose = { "dns_search" } },
  { name = "dns_opt", default = fresh, hash = true, container = function(c, d) d.dns_opt = c.dns_opt end,
    compose = { "dns_opt" } },
  { name = "security_opt", default = fresh, hash = true,
    container = function(c, d) d.security_opt = c.security_opt end, compose = { "security_opt" } },
  { name = "ipc", hash = true, container = function(c, d) d.ipc = c.ipc end, compose = { "ipc" } },
  { name = "pid", hash = true, container = function(c, d) d.pid = c.pid end, compose = { "pid" } },
  { name = "group_add", default = fresh, hash = true, container = function(c, d) d.group_add = c.group_add end,
    compose = { "group_add" } },
  { name = "oom_score_adj", hash = true, container = function(c, d) d.oom_score_adj = c.oom_score_adj end,
    compose = { "oom_score_adj" } },
  { name = "memory_reservation", hash = true,
    container = function(c, d) d.memory_reservation = c.memory_reservation end,
    compose = { "mem_reservation", "deploy" } },
  -- Absent: json-file rotated at 10 MB, 3 files (README "Logs"); "engine": the engine's default.
  { name = "logging", default = function() return fields.default_logging() end, hash = true,
    container = function(c, d) if c.logging ~= "engine" then d.logging = c.logging end end,
    compose = { "logging" } },
  -- hashed as the engine gets it: "service:x" joins x's holder or x's container (mw.spec)
  { name = "network_mode", hash = function(_, ctx) return ctx.network_mode end,
    container = function(_, d, ctx) d.network_mode = ctx.network_mode end,
    compose = { "network_mode" } },
  -- hashed only when false: a held container is told from one that is not by what it joins
  -- (Sup:ensure), so components that are never held (jobs, standbys, network_mode) keep their
  -- hash, and a reload that adds or drops a standby leaves the running container as it is
  { name = "hold_network", default = true, hash = function(c) if c.hold_network == false then return false end end,
    container = false, why_container = "the supervisor makes the holder container and has the component's " ..
      "join it (mw.holder); mw.spec moves the network fields onto the holder",
    compose = false, why_compose = "compose has no network holder: an imported service gets the default" },
  { name = "networks", default = fresh, hash = true,
    container = false, why_container = "the engine takes one network at create (notes §2); the supervisor " ..
      "connects these after",
    compose = { "networks" } },
  { name = "job", default = false,
    hash = false, why_hash = "how the supervisor treats an exit, not what runs",
    -- a label only, so that `mw status` without a running mw can say "completed"
    container = function(c, d) if c.job then d.labels["mw.job"] = "true" end end,
    compose = { "depends_on" } },
  { name = "profiles", default = fresh,
    hash = false, why_hash = "whether the component runs at all, not what runs",
    container = false, why_container = "mw.stack leaves out a component none of whose profiles is active",
    compose = { "profiles" } },
  { name = "standby",
    hash = false, why_hash = "a frozen spare of the same container beside it, not what runs",
    container = false, why_container = "the supervisor creates, freezes and promotes the spare (mw.standby)",
    compose = false, why_compose = "compose has no warm standby" },
  { name = "rollout",
    hash = false, why_hash = "how a change is rolled out, not what runs",
    container = false, why_container = "the supervisor's rollout reads it",
    compose = false, why_compose = "compose's deploy.update_config has no equivalent (kept as a comment)" },
  { name = "on_event",
    hash = false, why_hash = "what mw does when something happens to it, not what runs",
    container = false, why_container = "mw calls it (mw.alerts); the container never sees it",
    compose = false, why_compose = "compose has no alert hooks" },
}

-- What a component that sets no 'logging' gets: logs that cannot fill the disk (30 MB a
-- container). Compose and the engine keep json-file logs without a cap.
function fields.default_logging()
  return { driver = "json-file", options = { ["max-size"] = "10m", ["max-file"] = "3" } }
end

fields.by_name = {}
fields.names = {}
for i, f in ipairs(fields.component) do
  fields.by_name[f.name] = f
  fields.names[i] = f.name
end

-- The component table validation starts from: the name and every default.
function fields.defaults(name)
  local c = { name = name }
  for _, f in ipairs(fields.component) do
    local d = f.default
    if type(d) == "function" then d = d() end
    c[f.name] = d
  end
  return c
end

return fields
