-- expect: 40%-load%-bytecode%.lua:2: binary chunks are not allowed
local f = assert(load("\27LuaT\0\25\147\13\10\26\10"))
return f()
