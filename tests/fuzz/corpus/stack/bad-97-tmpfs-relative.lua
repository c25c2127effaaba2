-- expect: field 'volumes%[1%]%.tmpfs': the mount target must be an absolute path
return {
  components = {
    web = { image = "nginx", volumes = { { tmpfs = "tmp", size = "64m" } } },
  },
}
