-- expect: component 'c345': field 'env%.X': must be a string, number or boolean, got table
local comps = {}
for i = 1, 1000 do
  comps["c" .. i] = { image = "busybox", env = { X = i == 345 and {} or i } }
end
return { components = comps }
