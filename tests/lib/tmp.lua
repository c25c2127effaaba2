-- Temporary directories and file names for a test file, removed when the file ends: t.run()
-- calls tmp.cleanup() after its cases and after-hooks, even when a case fails.
local fs = require "mw.fs"

local tmp = { paths = {} }

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- A new private directory (0700) -> its path; `suffix` is appended to the name (spaces and all).
function tmp.dir(suffix)
  local d = os.tmpname()
  os.remove(d)
  d = d .. (suffix or "")
  assert(fs.mkdirp(d, 448))
  tmp.paths[#tmp.paths + 1] = d
  return d
end

-- A new empty file's name (os.tmpname creates it), removed at the end like the directories.
function tmp.file()
  local f = os.tmpname()
  tmp.paths[#tmp.paths + 1] = f
  return f
end

-- Removes every path made so far (at the file's end; a test may call it sooner).
function tmp.cleanup()
  for _, p in ipairs(tmp.paths) do os.execute("rm -rf " .. quote(p)) end
  tmp.paths = {}
end

return tmp
