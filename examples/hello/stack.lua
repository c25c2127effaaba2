-- The smallest stack: one web server that mw builds, starts and watches.
--
--   make -C examples                  # copies Debian's static busybox into ./web
--   ./mw run examples/hello/stack.lua # builds the image, starts it, says "healthy"; Ctrl-C leaves it running
--   ./mw destroy --stack hello        # removes the container and network mw made
return {
  name = "hello",
  components = {
    web = {
      -- ./web/Dockerfile: FROM scratch + busybox; mw builds it, no registry involved.
      build = "web",
      command = { "httpd", "-f", "-v", "-p", "8089", "-h", "/www" },
      -- Every second mw GETs /debug/vars on port 8089 (published on 127.0.0.1 only). A
      -- container that has not answered within `grace` of starting, or misses 3 in a row,
      -- has failed, and the restart policy (here the default: restart on failure) decides.
      heartbeat = { port = 8089, path = "/debug/vars", interval = "1s", misses = 3, grace = "10s" },
    },
  },
}
