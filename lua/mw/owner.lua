-- The installation mw acts for: every resource it makes carries used-by=<label>, every list,
-- event filter and ownership check asks for it, and mw never touches a resource without it.
-- Several installations share one engine with different labels (--label NAME or MW_LABEL;
-- the original tool's `destroy -l LABEL`). The label is spelled here and nowhere else.
local owner = {}

owner.KEY = "used-by"
owner.DEFAULT = "millwright"

-- Lowercase like a stack name, so that it fits inside container, network, volume and image
-- names, and holds no '=' or ',' to confuse a label filter.
local NAME = "^[a-z0-9][a-z0-9_.-]*$"
local MAX = 40

local label = owner.DEFAULT

-- owner.check(name) -> name | nil, message
function owner.check(name)
  if type(name) ~= "string" or name == "" then return nil, "the installation label must not be empty" end
  if #name > MAX or not name:find(NAME) or name:find("[._-][._-]") or name:find("[._-]$") then
    return nil, string.format("bad installation label %q (use up to %d lowercase letters, digits, '_', '.', '-', " ..
      "starting with a letter or digit)", name:sub(1, 60), MAX)
  end
  return name
end

-- Chooses the installation for this process (the command line does, once) -> name | nil, message.
function owner.set(name)
  local ok, err = owner.check(name)
  if not ok then return nil, err end
  label = name
  return name
end

function owner.name() return label end

-- "used-by=<label>", as a filter term and in messages.
function owner.term() return owner.KEY .. "=" .. label end

-- The labels every resource mw makes carries, plus extra: { ["used-by"] = label, ... }.
function owner.labels(extra)
  local l = { [owner.KEY] = label }
  for k, v in pairs(extra or {}) do l[k] = v end
  return l
end

-- A label filter for the engine's list and event calls: used-by=<label>, then the stack
-- (mw.stack=<stack>, or any stack: "mw.stack" when stack is nil), then the extra terms.
function owner.filter(stack, ...)
  local f = { owner.term(), stack and ("mw.stack=" .. stack) or "mw.stack" }
  for _, x in ipairs { ... } do f[#f + 1] = x end
  return f
end

-- Whether a resource's labels say it is this installation's.
function owner.owns(labels)
  return type(labels) == "table" and labels[owner.KEY] == label
end

-- What goes before a stack's name in the names of its containers, networks, volumes and
-- images: nothing for the default installation (names stay as they always were), "<label>-"
-- for any other, so two installations can run stacks of the same name side by side.
function owner.prefix()
  return label == owner.DEFAULT and "" or (label .. "-")
end

-- The state directory of this installation inside a base state directory: the base itself
-- for the default, <base>/@<label> for another ('@' starts no stack name, so `mw status`
-- never takes it for a stack).
function owner.state_dir(base)
  if label == owner.DEFAULT then return base end
  return base .. "/@" .. label
end

return owner
