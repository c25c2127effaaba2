-- Turns a validated component into the engine's container create body, and hashes the
-- resolved definition so a changed component is recognised on the engine by its label.
local core = require "mw.core"
local docker = require "mw.docker"
local secret = require "mw.secret"
local owner = require "mw.owner"
local fields = require "mw.fields"

local spec = {}

-- Names on the engine: <stack>-<component>[-<n>] (the instance key), <stack>_<volume>,
-- network mw-<stack>; another installation than the default puts "<label>-" before <stack>.
local function base(stack) return owner.prefix() .. stack.name end
function spec.container_name(stack, key) return base(stack) .. "-" .. key end
-- an instance's network holder (mw.holder): a component name has no dot, so no clash
function spec.holder_name(stack, key) return spec.container_name(stack, key) .. ".net" end
spec.held = fields.held
function spec.network_name(stack) return "mw-" .. base(stack) end
function spec.volume_name(stack, vol) return base(stack) .. "_" .. vol end
function spec.image_tag(stack) return "mw-" .. base(stack) end

function spec.labels(stack, extra)
  local l = owner.labels { ["mw.stack"] = stack.name }
  for k, v in pairs(extra or {}) do l[k] = v end
  return l
end

-- A canonical encoding (sorted keys) so equal definitions hash equally.
local function canon(v, out)
  local t = type(v)
  if t == "table" and not secret.is(v) then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      if type(v[k]) ~= "function" then
        out[#out + 1] = tostring(k) .. "="
        canon(v[k], out)
        out[#out + 1] = ";"
      end
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif t == "table" and secret.is(v) then
    -- a change of a secret must change the hash, but the label must not carry the value:
    -- hash it on its own first
    out[#out + 1] = "secret:" .. core.hash("mw-secret\0" .. secret.reveal(v))
  elseif t ~= "function" then
    out[#out + 1] = tostring(v)
  end
  return out
end

function spec.hash(v) return core.hash(table.concat(canon(v, {}))) end

-- The engine's name of a component's named volume: instances get their own (data, data-2, …)
-- unless the volume is marked shared.
function spec.instance_volume(stack, v, instance)
  if v.external then return v.name end   -- an existing volume, by its exact name
  if v.shared or (instance or 1) == 1 then return spec.volume_name(stack, v.name) end
  return spec.volume_name(stack, v.name) .. "-" .. instance
end

-- The engine's NetworkMode for a component's network_mode: "host", "none", or the container
-- of instance 1 of the component whose namespace it shares ("service:x" -> "container:<name>").
-- A held x is joined at its holder, which outlives x's restarts.
function spec.network_mode(stack, mode)
  local of = mode:match("^service:(.+)$")
  if of then
    local def = stack.components and stack.components[of]
    if def and spec.held(def) then return "container:" .. spec.holder_name(stack, of) end
    return "container:" .. spec.container_name(stack, of)
  end
  return mode
end

-- Extra networks beyond the stack's own: mw-<stack>-<name>; an external one (the stack's
-- `networks = { x = { external = true, name = ... } }`) by its own name.
function spec.extra_network(stack, name)
  local def = stack.networks and stack.networks[name]
  if def and def.external then return def.name or name end
  return "mw-" .. base(stack) .. "-" .. name
end

-- A component's network entry (mw.validate field.networks) -> its name, its options or nil.
function spec.network_entry(e)
  if type(e) == "table" then return e.name, e end
  return e, nil
end

local function volume_mounts(stack, c, instance)
  local list = {}
  for _, v in ipairs(c.volumes or {}) do
    if v.type == "volume" then
      list[#list + 1] = { type = "volume", source = spec.instance_volume(stack, v, instance), target = v.target,
                          read_only = v.read_only }
    elseif v.type == "bind" then
      list[#list + 1] = { type = "bind", source = v.source, target = v.target, read_only = v.read_only }
    elseif v.type == "tmpfs" then
      list[#list + 1] = { type = "tmpfs", target = v.target, size = v.size }
    end
  end
  return list
end

local function secret_mounts(c)
  local list = {}
  for _, s in ipairs(c.secrets or {}) do
    list[#list + 1] = { type = "bind", source = s.source, target = s.target, read_only = true }
  end
  return list
end

local function config_mounts(c)
  local list = {}
  for _, s in ipairs(c.configs or {}) do
    list[#list + 1] = { type = "bind", source = s.source, target = s.target, read_only = true }
  end
  return list
end

local function add_mounts(d, list)
  d.mounts = d.mounts or {}
  for _, m in ipairs(list) do d.mounts[#d.mounts + 1] = m end
end

-- What the container publishes: the component's ports, and its heartbeat's port (ephemeral,
-- on 127.0.0.1 only) unless one of those already publishes it there, or heartbeats go through
-- the container's own network namespace (hb_via "netns": no port, no docker-proxy).
local function published_ports(c, hb_via)
  local hb = c.heartbeat
  local ports = {}
  for _, p in ipairs(c.ports or {}) do
    ports[#ports + 1] = { container = p.container, host = p.host, ip = p.ip, proto = p.proto }
  end
  -- network_mode: nothing is published (host: the port is the host's own; service:x: x's)
  if c.network_mode then return ports end
  if hb and hb.port and (hb.kind == "http" or hb.kind == "tcp") and hb_via ~= "netns" then
    local published = false
    for _, p in ipairs(ports) do
      if p.container == hb.port and p.proto == "tcp" and p.ip == "127.0.0.1" then published = true end
    end
    if not published then ports[#ports + 1] = { container = hb.port, ip = "127.0.0.1", proto = "tcp" } end
  end
  return ports
end

-- What a held component's holder takes from its description: whatever the engine refuses on a
-- container that joins another's namespace (its network, published and exposed ports,
-- hostname, DNS, extra hosts: moby runconfig validateNetContainerMode).
local HELD_KEYS = { "network", "aliases", "ports", "hostname", "extra_hosts", "dns", "dns_search", "dns_opt" }

-- Splits a held component's description: the holder's part -> { desc =, hash = }; the
-- component's container joins it ("container:" .. the holder's id, set by mw.holder). The
-- hash covers the extra networks too, which the supervisor connects the holder to.
local function split_holder(stack, c, d)
  local hold = { labels = {} }
  for _, k in ipairs(HELD_KEYS) do
    hold[k] = d[k]
    d[k] = nil
  end
  local hash = spec.hash { hold, c.networks or {} }
  hold.labels = spec.labels(stack, { ["mw.holder-hash"] = hash })
  hold.stop_signal = "SIGKILL"       -- its process ignores SIGTERM (tools/holder.c)
  d.network_mode = "container:"
  return { desc = hold, hash = hash }
end

-- spec.container(stack, c, image_id[, instance[, overrides[, hb_via]]]) -> create body, config
-- hash, and for a held component (spec.held) its holder: { desc =, hash = } (mw.holder)
-- overrides: what a policy changed at run time (a higher memory limit after an OOM kill).
-- hb_via: the supervisor's heartbeat path ("netns" publishes no port for the heartbeat alone;
-- the port list is hashed, so a container made for the other path is replaced, once).
-- image_id is the resolved image (an ID for builds) so a rebuilt image changes the hash; the
-- instance number is a label only, so every instance of a component has the same hash.
-- What each field hashes and puts in the container is said in mw.fields.
function spec.container(stack, c, image_id, instance, overrides, hb_via)
  if overrides and next(overrides) then
    local merged = setmetatable({}, { __index = c })
    for k, v in pairs(overrides) do merged[k] = v end
    c = merged
  end
  local ctx = {
    image_id = image_id, ports = published_ports(c, hb_via), add_mounts = add_mounts,
    volume_mounts = function(comp) return volume_mounts(stack, comp, instance) end, secret_mounts = secret_mounts,
    config_mounts = config_mounts,
    network_mode = c.network_mode and spec.network_mode(stack, c.network_mode),
  }
  local resolved = {}
  for _, f in ipairs(fields.component) do
    if f.hash == true then
      resolved[f.name] = c[f.name]
    elseif f.hash then
      resolved[f.name] = f.hash(c, ctx)
    end
  end
  local hash = spec.hash(resolved)
  ctx.own_labels = spec.labels(stack, { ["mw.component"] = c.name, ["mw.config-hash"] = hash,
                                        ["mw.instance"] = tostring(instance or 1) })
  local d = { network = spec.network_name(stack), aliases = { c.name }, mounts = {} }
  if c.network_mode then d.network, d.aliases = nil, nil end
  for _, f in ipairs(fields.component) do
    if f.container then f.container(c, d, ctx) end
  end
  local hold = spec.held(c) and split_holder(stack, c, d) or nil
  return docker.container_spec(d), hash, hold
end

-- Whether replacing this component can start the new container before removing the old one:
-- only when nothing it holds is exclusive (a fixed host port).
function spec.start_first(c)
  if not c.heartbeat then return false end
  -- host or a shared namespace: the next container would bind the same ports in the same place
  if c.network_mode then return false end
  for _, p in ipairs(c.ports or {}) do
    if p.host then return false end
  end
  -- a static address is held by the old container until it is removed
  for _, e in ipairs(c.networks or {}) do
    if type(e) == "table" and e.ipv4_address then return false end
  end
  return true
end

return spec
