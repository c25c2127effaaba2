-- Path arithmetic on strings ("/"-separated), shared by the stack loader and mw import.
local path = {}

-- Resolves "." and ".." and repeated slashes without touching the file system.
function path.normalize(p)
  local abs = p:sub(1, 1) == "/"
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then
        parts[#parts] = nil
      elseif not abs then
        parts[#parts + 1] = ".."
      end
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  local s = table.concat(parts, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

function path.join(dir, p)
  if p:sub(1, 1) == "/" then return path.normalize(p) end
  return path.normalize(dir .. "/" .. p)
end

function path.dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

function path.basename(p) return (path.normalize(p):match("([^/]*)$")) end

-- p as "./x" when it lies under dir, else p unchanged.
function path.relative(dir, p)
  if p == dir then return "." end
  if p:sub(1, #dir + 1) == dir .. "/" then return "./" .. p:sub(#dir + 2) end
  return p
end

return path
