-- The etcd client's pieces that need no etcd: base64, the coordination address and settings,
-- the engine fence, and `mw run --coord` refusing bad settings before anything happens.
local t = require "t"
local etcd = require "mw.etcd"
local coord = require "mw.coord"
local docker = require "mw.docker"
local run = require "run"
local tmp = require "tmp"
local fs = require "mw.fs"

t.test("base64 round trips and matches RFC 4648's vectors", function()
  local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
  for plain, enc in pairs(vectors) do
    t.eq(etcd.b64(plain), enc, plain)
    t.eq(etcd.unb64(enc), plain, enc)
  end
  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  local s = table.concat(all)
  t.eq(etcd.unb64(etcd.b64(s)), s, "every byte")
  t.eq(etcd.unb64("not base64!"), nil, "a bad character")
end)

t.test("prefix range end and lease ids as etcd spells them", function()
  t.eq(etcd.prefix_end("/mw/a/"), "/mw/a0")
  t.eq(etcd.prefix_end("a\255"), "b")
  t.eq(etcd.lease_hex("5007618290828187397"), "457ea24dd3901705")
end)

t.test("coordination addresses", function()
  local a = assert(etcd.parse("etcd://10.0.0.1:2379,10.0.0.2:2379/team"))
  t.same(a.endpoints, { "http://10.0.0.1:2379", "http://10.0.0.2:2379" })
  t.eq(a.prefix, "/team")
  local b = assert(etcd.parse("etcd://h1"))
  t.same(b.endpoints, { "http://h1:2379" })
  t.eq(b.prefix, "/mw")
  t.same(assert(etcd.parse("etcds://h1:1,[::1]:2")).endpoints, { "https://h1:1", "https://[::1]:2" })
  t.same(assert(etcd.parse("etcd://h1:1", { ca = "/ca.pem" })).endpoints, { "https://h1:1" }, "a CA means TLS")
  t.eq(etcd.parse("http://h1:1"), nil)
  t.eq(etcd.parse("etcd://h1:99999"), nil)
  t.eq(etcd.parse("etcd://bad host:1"), nil)
end)

t.test("coord.config: TTL bounds, cert and key together, user:password", function()
  t.eq(coord.config {}, false, "no --coord, no MW_COORD: the local queue")
  local c = assert(coord.config { coord = "etcd://h:1", coord_ttl = "7s", coord_user = "root:pw" })
  t.eq(c.ttl, 7)
  t.eq(c.user, "root")
  t.eq(c.password, "pw")
  t.eq(assert(coord.config { coord = "etcd://h:1" }).ttl, coord.DEFAULT_TTL)
  local n, err = coord.config { coord = "etcd://h:1", coord_ttl = "1" }
  t.eq(n, nil)
  t.match(err, "coord%-ttl")
  t.eq(coord.config { coord = "etcd://h:1", coord_ttl = "x" }, nil)
  t.eq(coord.config { coord = "etcd://h:1", coord_cert = "/c.pem" }, nil, "a cert without its key")
  local tls = assert(coord.config { coord = "etcd://h:1", coord_cert = "/c.pem", coord_key = "/k.pem" })
  t.eq(tls.endpoints[1], "https://h:1")
  t.eq(tls.tls.cert, "/c.pem")
end)

t.test("the fence refuses engine writes, never reads", function()
  local e = setmetatable({ where = "nowhere", calls = {}, total = 0 }, { __index = docker.Engine })
  local open = false
  e.fence = function() return open end
  t.eq(e:_fenced("start", "GET", "/containers/json"), nil)
  t.match(e:_fenced("start", "POST", "/containers/x/start"), "no longer holds")
  t.match(e:_fenced("remove", "DELETE", "/containers/x"), "no longer holds")
  open = true
  t.eq(e:_fenced("start", "POST", "/containers/x/start"), nil)
  t.eq(e.calls["remove fenced"], 1, "a refused call is counted as fenced")
end)

t.test("mw run --coord with bad settings: exit 2 and one line, before any engine call", function()
  local d = tmp.dir()
  local file = d .. "/stack.lua"
  assert(fs.write_atomic(file, 'return { name = "x", components = { a = { image = "i" } } }', 420))
  local env = { "DOCKER_HOST=unix:///nonexistent.sock" }
  local cases = {
    { { "run", "--coord", "http://h:1", file }, "expected etcd://" },
    { { "run", "--coord", "etcd://h:1", "--coord-ttl", "0", file }, "coord%-ttl" },
    { { "run", "--coord-ttl", "5", file }, "need %-%-coord" },
    { { "run", "--coord", "etcd://h:1", "--coord-cert", "/c", file }, "go together" },
  }
  for _, c in ipairs(cases) do
    local code, out, errout = run.mw(c[1], { env = env })
    t.eq(code, 2, table.concat(c[1], " "))
    t.match(errout, c[2], table.concat(c[1], " "))
    t.eq(out, "")
  end
end)

os.exit(t.run())
