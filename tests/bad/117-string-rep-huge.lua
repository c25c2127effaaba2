-- expect: 117%-string%-rep%-huge%.lua: out of memory %(user code may use %d+ MiB more; MW_USER_MEMORY%)
-- Three strings of 1.9 GB: the memory ceiling refuses the first.
local a = string.rep("x", 1900 * 1024 * 1024)
local b = string.rep("y", 1900 * 1024 * 1024)
local c = string.rep("z", 1900 * 1024 * 1024)
return { components = { web = { image = "busybox", env = { A = a, B = b, C = c } } } }
