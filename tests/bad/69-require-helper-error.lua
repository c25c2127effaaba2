-- expect: 69%-require%-helper%-error%.lua: tests/bad/helpers_bad%.lua:3: helper broke$
local h = require "helpers_bad"
return h.stack()
