-- expect: has network_mode "host" and 'ports': a host%-networked container listens on the host's ports itself
return {
  components = {
    tool = { image = "busybox", network_mode = "host", ports = { "8080:80" } },
  },
}
