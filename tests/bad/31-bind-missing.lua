-- expect: bind mount source "%./nope" does not exist %(relative to the stack file%), and create_host_path = false
return {
  components = {
    web = { image = "nginx", volumes = { { source = "./nope", target = "/etc/nope", read_only = true,
                                           create_host_path = false } } },
  },
}
