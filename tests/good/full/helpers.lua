-- Helper beside the stack file: loaded once, in the same sandbox as the stack file.
local backoff = require "mw.backoff"
local helpers = {}

-- A quick-retry shape several components share.
helpers.quick = backoff.linear { initial = "250ms", step = "250ms", max = "2s" }

function helpers.service(image, extra)
  local c = { image = image }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

return helpers
