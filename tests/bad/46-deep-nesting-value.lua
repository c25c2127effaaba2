-- expect: component 'web': field 'labels%.deep': must be a string, number or boolean, got table
local t = {}
local cur = t
for _ = 1, 100000 do cur.next = {}; cur = cur.next end
return { components = { web = { image = "nginx", labels = { deep = t } } } }
