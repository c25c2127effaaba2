-- expect: 53%-string%-metatable%.lua:2: attempt to index a nil value
getmetatable("").__index.upper = nil
