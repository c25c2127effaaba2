-- expect: field 'secrets%.key': secret file "/dev/zero" is a character device, not a regular file
-- A secret that is a device: mounting /dev/zero as a secret hands the container an endless file.
return {
  components = {
    web = { image = "nginx", secrets = { key = "/dev/zero" } },
  },
}
