-- expect: 120%-concat%-c%-index%.lua: 
-- table.concat over 2^63 items that a C function (rawlen) makes up: concatenated in slices.
local t = setmetatable({}, { __index = rawlen })
local _ = table.concat(t, "", 1, math.maxinteger)
return { components = { web = { image = "busybox" } } }
