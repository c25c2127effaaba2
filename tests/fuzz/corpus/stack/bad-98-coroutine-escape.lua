-- expect: 98%-coroutine%-escape%.lua: stack file ran too long %(budget exceeded%)
local co = coroutine.wrap(function() while true do end end)
co()
