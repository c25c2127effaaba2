-- expect: 35%-loop%-forever%.lua: stack file ran too long %(budget exceeded%)
while true do end
