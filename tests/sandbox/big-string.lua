-- A stack file that holds 20 MB while it loads: fine under the default 64 MiB ceiling, refused
-- with MW_USER_MEMORY=8M (tests/unit/test_sandbox.lua).
local s = string.rep("x", 20 * 1024 * 1024)
return { name = "big", components = { web = { image = "busybox", env = { N = #s } } } }
