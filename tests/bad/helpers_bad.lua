-- Helper for 69-require-helper-error: fails while loading.
local h = {}
error("helper broke")
return h
