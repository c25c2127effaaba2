-- expect: 37%-os%-execute%.lua:3: os%.execute is not available in stack files
local ok = true
os.execute("touch /tmp/mw-sandbox-escaped")
return {}
