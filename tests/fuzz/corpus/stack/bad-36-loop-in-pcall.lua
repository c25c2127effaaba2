-- expect: 36%-loop%-in%-pcall%.lua: stack file ran too long %(budget exceeded%)
while true do
  pcall(function() while true do end end)
end
