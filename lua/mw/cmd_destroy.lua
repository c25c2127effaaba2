-- `mw destroy`: removes what mw made for a stack (or for every stack of this installation):
-- containers, then networks, then images, and volumes when asked; never an object without
-- this installation's used-by label and a stack label, whatever the engine's filter said.
local lookup = require "mw.lookup"
local owner = require "mw.owner"

local M = {}

local OK, FAILURE, USAGE = 0, 1, 2

-- Which of destroy's targets its arguments mean -> { stack = name | all = true } | nil, why.
function M.target(opts, file_stack)
  local n = (opts.all and 1 or 0) + (opts.stack and 1 or 0) + (file_stack and 1 or 0)
  if n > 1 then return nil, "give one of a stack file, --stack and --all" end
  if opts.all then return { all = true } end
  return { stack = opts.stack or file_stack }
end

-- Whether an object carries mw's labels for the target (checked again on each object before
-- it is removed, whatever the filter said).
function M.owned(labels, target)
  if not owner.owns(labels) then return false end
  local stack = labels["mw.stack"]
  if type(stack) ~= "string" or stack == "" then return false end
  return target.all or stack == target.stack
end

local name_of = lookup.name_of

function M.main(args, cli)
  local opts, rest = cli.parse(args, { stack = "value", all = true, volumes = true, ["state-dir"] = "value" })
  if not opts then cli.say(rest) return USAGE end
  local file = lookup.take_file(rest)
  if file == false then cli.say("destroy: give one stack file") return USAGE end
  if #rest > 0 then cli.say("destroy: unexpected argument " .. rest[1]) return USAGE end
  if not file and not opts.stack and not opts.all then file = "stack.lua" end
  local file_stack
  if file then
    local def = lookup.load_file(file)
    if not def then return USAGE end
    file_stack = def.name
  end
  local target, terr = M.target(opts, file_stack)
  if not target then cli.say("destroy: " .. terr) return USAGE end
  local engine = lookup.connect(cli.say)
  if not engine then return FAILURE end

  if target.stack then
    local live = lookup.live_status(lookup.state_dir(opts), target.stack)
    if live then
      cli.say(string.format("warning: mw (pid %s) is running stack %s and will recreate what is removed; stop it first",
        tostring(live.pid), target.stack))
    end
  end
  local filter = { label = owner.filter(target.stack) }
  local rc = OK
  local function fail(what, name, err)
    cli.say(string.format("cannot remove %s %s: %s", what, name, tostring(err)))
    rc = FAILURE
  end
  local function listed(list, err, what)
    if not list then cli.say("cannot list " .. what .. ": " .. tostring(err)) rc = FAILURE return {} end
    return list
  end
  local function removed(what, name) lookup.write("removed " .. what .. " " .. name .. "\n") end

  -- containers first (they hold the network and the images), then networks, then images
  -- (the containers, then the network holders they joined: mw.holder)
  local ctrs, cerr = engine:list { label = owner.filter(target.stack, "mw.config-hash") }
  local holders, herr = lookup.holders(engine, target.stack)
  for _, list in ipairs { listed(ctrs, cerr, "containers"), listed(holders, herr, "network holders") } do
    for _, ctr in ipairs(list) do
      if M.owned(ctr.Labels, target) then
        local what = ctr.Labels["mw.holder"] and "network holder" or "container"
        local ok, err = engine:remove(ctr.Id, { force = true, volumes = opts.volumes })
        if not ok then fail(what, name_of(ctr), err)
        elseif err ~= "gone" then removed(what, name_of(ctr)) end
      end
    end
  end
  local nets, nerr = engine:network_list(filter)
  for _, net in ipairs(listed(nets, nerr, "networks")) do
    if M.owned(net.Labels, target) then
      local ok, err = engine:network_remove(net.Id)
      if not ok then fail("network", net.Name, err)
      elseif err ~= "gone" then removed("network", tostring(net.Name)) end
    end
  end
  local imgs, ierr = engine:image_list(filter)
  for _, img in ipairs(listed(imgs, ierr, "images")) do
    if M.owned(img.Labels, target) then
      -- by tag, so an image with several tags goes without force; by id when it has none
      local tags = {}
      for _, tag in ipairs(img.RepoTags or {}) do if tag ~= "<none>:<none>" then tags[#tags + 1] = tag end end
      if #tags == 0 then tags[1] = img.Id end
      for _, tag in ipairs(tags) do
        local ok, err, code = engine:image_remove(tag)
        if not ok and code == "conflict" then
          -- a container mw does not own runs from it: the image stays, and destroy says why
          lookup.write("kept image " .. tag .. " (a container mw did not create uses it)\n")
        elseif not ok then fail("image", tag, err)
        elseif err ~= "gone" then removed("image", tag) end
      end
    end
  end
  local vols, verr = engine:volume_list(filter)
  local kept = 0
  for _, vol in ipairs(listed(vols, verr, "volumes")) do
    if M.owned(vol.Labels, target) then
      if opts.volumes then
        local ok, err = engine:volume_remove(vol.Name)
        if not ok then fail("volume", vol.Name, err)
        elseif err ~= "gone" then removed("volume", vol.Name) end
      else
        kept = kept + 1
      end
    end
  end
  if kept > 0 then
    cli.say(string.format("kept %d volume%s (use --volumes to remove %s)", kept, kept == 1 and "" or "s",
      kept == 1 and "it" or "them"))
  end
  io.stdout:flush()
  return rc
end

return M
