-- Secret values for a stack file's env: env = { DB_PASSWORD = secret "s3cret" } or
-- secret.env "DB_PASSWORD" (taken from mw's own environment). A secret prints as <secret>
-- everywhere mw prints (logs, status, errors, mw check); only the container's env gets the value.
local secret = {}

-- The values live beside the objects, not in them, so walking or printing an object shows nothing.
local values = setmetatable({}, { __mode = "k" })

local mt = {
  __name = "mw.secret",
  __tostring = function() return "<secret>" end,
  __metatable = "mw.secret",
  __index = function() return nil end,
  __newindex = function() error("a secret cannot be changed", 2) end,
}

local function new(v)
  local s = setmetatable({}, mt)
  values[s] = v
  return s
end

function secret.is(v) return values[v] ~= nil end

-- The value, for the one place that needs it: the container's environment.
function secret.reveal(v) return values[v] end

-- secret.env("NAME"[, default]): a value from mw's environment, kept secret
function secret.env(name, default)
  if type(name) ~= "string" or name == "" then error("secret.env: give a variable name", 2) end
  local v = os.getenv(name) or default
  if v == nil then error("secret.env: " .. name .. " is not set in mw's environment", 2) end
  return new(tostring(v))
end

return setmetatable(secret, {
  __call = function(_, v)
    if type(v) ~= "string" and type(v) ~= "number" then error("secret: give a string", 2) end
    return new(tostring(v))
  end,
})
