-- expect: component 'c1': field 'env': has more than 10000 entries
-- A one-million-entry env shared by every component: refused before it is walked or sorted.
local env = {}
for i = 1, 1000000 do env[i] = "A=x" end
local comps = {}
for i = 1, 20 do comps["c" .. i] = { image = "busybox", env = env } end
return { components = comps }
