-- expect: bind mount source "%./nope" does not exist
return {
  components = {
    web = { image = "nginx", volumes = { "./nope:/etc/nope:ro" } },
  },
}
