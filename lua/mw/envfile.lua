-- Env files read when a stack loads: a component's env_file and the .env beside the stack file
-- that mw.env / mw.interpolate read. The syntax is compose's (mw.dotenv parses it, as for import);
-- a file is read whole through the bounded fs.read, and must be UTF-8 text.
local fs = require "mw.fs"
local dotenv = require "mw.dotenv"

local M = {}

-- An env file is a list of settings: 1 MiB is far beyond any real one, and the read stops there.
M.MAX = 1024 * 1024

-- The first line of text that is not valid UTF-8 (nil: all of it is).
local function bad_line(text)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if not utf8.len(line) then return n end
  end
  return nil
end

-- M.read(path) -> vars (name -> value, in the file's order as vars.order) | nil, problem, code.
-- The problem names no value (a line of the file may hold one): "not found", "line 3: ...".
-- code: "ENOENT" when there is no file. A name alone (`KEY`, no "=") takes mw's own
-- environment's value, and is left out when that is not set, as compose does.
function M.read(path, getenv)
  getenv = getenv or os.getenv
  local st = fs.stat(path, true)
  if not st then return nil, "not found", "ENOENT" end
  if st.type ~= "file" then return nil, "is not a regular file", "EINVAL" end
  if st.size > M.MAX then return nil, "is larger than 1 MiB", "EFBIG" end
  local text, err, code = fs.read(path, M.MAX)
  if not text then
    if code == "EFBIG" then return nil, "is larger than 1 MiB", code end
    return nil, "cannot be read (" .. tostring(code or err) .. ")", code
  end
  if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end      -- a byte order mark
  local line = bad_line(text)
  if line then return nil, string.format("is not UTF-8 text (line %d)", line), "EILSEQ" end
  if text:find("%z") then return nil, "holds a NUL byte", "EILSEQ" end
  local entries, perr = dotenv.parse(text)
  if not entries then
    -- "line N: expected NAME=value, got <the line>": the line may be a value; keep only where
    perr = tostring(perr)
    if perr:find("^line %d+: unterminated . quote$") then return nil, perr, "EINVAL" end
    return nil, (perr:match("^line %d+") or "bad syntax") .. ": not NAME=value", "EINVAL"
  end
  local vars, order = {}, {}
  for _, e in ipairs(entries) do
    local v = e[2]
    if v == nil then v = getenv(e[1]) end
    if v ~= nil then
      if vars[e[1]] == nil then order[#order + 1] = e[1] end
      vars[e[1]] = v
    end
  end
  return vars, order
end

-- Compose's interpolation of s (${VAR}, ${VAR:-default}, ${VAR:?message}, $$ ...) with lookup(name)
-- -> the text | nil, problem.
function M.interpolate(s, lookup)
  local problem
  local vars = {
    lookup = lookup,
    warn = function() end,         -- an unset ${VAR} is "", as in compose (which warns)
    fail = function(msg) problem = msg error(M, 0) end,
  }
  local ok, out = pcall(dotenv.interpolate_tree, vars, s, "")
  if ok then return out end
  if out ~= M then error(out, 0) end
  return nil, (problem:gsub("^: ", ""))
end

return M
