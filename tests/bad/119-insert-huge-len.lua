-- expect: 119%-insert%-huge%-len%.lua: stack file ran too long %(budget exceeded%)
-- table.insert at the front of a "table" whose __len says 2^63: a shift the hook cannot see.
local t = setmetatable({}, { __len = function() return math.maxinteger - 10 end })
table.insert(t, 1, "x")
return { components = { web = { image = "busybox" } } }
