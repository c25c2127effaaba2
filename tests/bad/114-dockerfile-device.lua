-- expect: field 'build%.dockerfile': Dockerfile "zero" is a character device, not a regular file
-- A Dockerfile that is a device would be read without end when it lies outside the context.
return {
  components = {
    web = { build = { context = "/dev", dockerfile = "zero" } },
  },
}
