-- expect: 70%-require%-dotdot%.lua:2: require: bad module name '%.%./etc/passwd'
local h = require "../etc/passwd"
