-- expect: 121%-load%-huge%.lua:%d+: chunk too large for load
-- Compiling is one C call: load() takes at most 1 MiB of source.
local f = assert(load(("x = 1 "):rep(200000)))
f()
return { components = { web = { image = "busybox" } } }
