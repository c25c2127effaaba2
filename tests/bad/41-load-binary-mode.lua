-- expect: only text chunks are allowed
local f = load("return 1", "x", "b")
return {}
