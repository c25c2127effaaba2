-- expect: component 'c12345': field 'env%.X': must be a string, number or boolean, got table
local comps = {}
for i = 1, 20000 do
  comps["c" .. i] = { image = "busybox", env = { X = i == 12345 and {} or i } }
end
return { components = comps }
