-- expect: 54%-gc%-metamethod%.lua:2: setmetatable: __gc metamethods are not allowed
setmetatable({}, { __gc = function() while true do end end })
