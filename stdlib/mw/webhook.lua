-- The small HTTP client an on_event hook may use: webhook.post(url, body, opts) sends one POST
-- and waits for its answer; webhook.json(value) spells plain data as JSON. Only a hook that mw
-- runs for an event can post (mw.alerts runs it as a coroutine and does the request for it);
-- anywhere else, post fails with one line.
local webhook = {}

-- What post yields to mw.alerts, which alone knows how to answer it. A hook that yields this
-- itself gains nothing post does not give it.
webhook.REQUEST = setmetatable({}, { __metatable = false, __tostring = function() return "webhook request" end })

-- The coroutines mw runs hooks in (mw.alerts marks each): post works in those alone.
local hooks = setmetatable({}, { __mode = "k" })
function webhook._mark(co) hooks[co] = true end

webhook.MAX_BODY = 256 * 1024     -- bytes of a request body
webhook.MAX_HEADERS = 32
webhook.MAX_DEPTH = 32            -- nesting json() follows

local function check(cond, msg)
  if not cond then error("webhook.post: " .. msg, 3) end
end

-- Plain data as JSON: nil, booleans, finite numbers, strings, and tables of them (a table whose
-- keys are 1..n is an array, else an object of its string keys, sorted). Metamethods are not
-- run; a cycle or anything else is an error.
function webhook.json(value)
  local out = {}
  local function str(s)
    out[#out + 1] = '"' .. s:gsub('[%c"\\\127]', function(c)
      local b = c:byte()
      if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
      elseif c == "\n" then return "\\n" elseif c == "\r" then return "\\r" elseif c == "\t" then return "\\t" end
      return string.format("\\u%04x", b)
    end) .. '"'
  end
  local function enc(v, depth)
    local t = type(v)
    if v == nil then out[#out + 1] = "null"
    elseif t == "boolean" then out[#out + 1] = v and "true" or "false"
    elseif t == "number" then
      if v ~= v or v == math.huge or v == -math.huge then error("webhook.json: cannot encode " .. tostring(v), 0) end
      out[#out + 1] = math.type(v) == "integer" and string.format("%d", v) or string.format("%.17g", v)
    elseif t == "string" then str(v)
    elseif t == "table" then
      if depth >= webhook.MAX_DEPTH then error("webhook.json: nested deeper than " .. webhook.MAX_DEPTH, 0) end
      local n, count, keys = rawlen(v), 0, {}
      for k in next, v do
        count = count + 1
        if type(k) == "string" then keys[#keys + 1] = k
        elseif math.type(k) ~= "integer" or k < 1 or k > n then
          error("webhook.json: cannot encode a table key of type " .. type(k), 0)
        end
      end
      if count > 0 and #keys == 0 and count == n then
        out[#out + 1] = "["
        for i = 1, n do
          if i > 1 then out[#out + 1] = "," end
          enc(rawget(v, i), depth + 1)
        end
        out[#out + 1] = "]"
      else
        if #keys ~= count then error("webhook.json: a table mixes list items and named keys", 0) end
        table.sort(keys)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          str(k)
          out[#out + 1] = ":"
          enc(rawget(v, k), depth + 1)
        end
        out[#out + 1] = "}"
      end
    else
      error("webhook.json: cannot encode a " .. t .. " value", 0)
    end
  end
  enc(value, 0)
  return table.concat(out)
end

-- webhook.post(url, body, { headers = { Name = "value" }, timeout = seconds })
--   -> { status = n, body = "..." } | nil, error text
-- body: a string sent as is, or a table sent as JSON (Content-Type: application/json unless
-- the headers say otherwise). The answer's body is cut at mw's cap (README "on_event").
function webhook.post(url, body, opts)
  check(type(url) == "string" and url:find("^https?://[%w%[]") ~= nil,
    "the URL must be a string starting with http:// or https://")
  check(not url:find("[%c%s]"), "the URL must not contain spaces or control characters")
  opts = opts == nil and {} or opts
  check(type(opts) == "table", "options must be a table { headers = ..., timeout = ... }")
  local headers = {}
  local given = rawget(opts, "headers")
  local has_type = false
  if given ~= nil then
    check(type(given) == "table", "headers must be a table of Name = \"value\"")
    local n = 0
    for k, v in next, given do
      n = n + 1
      check(n <= webhook.MAX_HEADERS, "more than " .. webhook.MAX_HEADERS .. " headers")
      check(type(k) == "string" and k:find("^[%w!#$%%&'*+.^_`|~-]+$") ~= nil, "a header name must be a token")
      check(type(v) == "string" and not v:find("[%c]"), "header " .. k .. ": the value must be a string without control characters")
      if k:lower() == "content-type" then has_type = true end
      headers[k] = v
    end
  end
  local timeout = rawget(opts, "timeout")
  check(timeout == nil or (type(timeout) == "number" and timeout > 0), "timeout must be a number of seconds above 0")
  for k in next, opts do
    check(k == "headers" or k == "timeout", "unknown option " .. (type(k) == "string" and k or "(" .. type(k) .. ")"))
  end
  if type(body) == "table" then
    local ok, text = pcall(webhook.json, body)
    check(ok, tostring(text))
    body = text
    if not has_type then headers["Content-Type"] = "application/json" end
  end
  check(body == nil or type(body) == "string", "the body must be a string or a table (sent as JSON)")
  check(body == nil or #body <= webhook.MAX_BODY, "the body is larger than " .. webhook.MAX_BODY .. " bytes")
  check(hooks[coroutine.running()], "only an on_event hook that mw runs may post (not a coroutine of its own)")
  local res, err = coroutine.yield(webhook.REQUEST, { url = url, body = body or "", headers = headers, timeout = timeout })
  return res, err
end

return webhook
