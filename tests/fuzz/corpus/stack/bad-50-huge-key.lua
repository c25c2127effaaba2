-- expect: component 'web': unknown field 'xxxxxxxxxx.*%.%.%.'
local k = string.rep("x", 100000)
return { components = { web = { image = "nginx", [k] = 1 } } }
