-- expect: field 'devices%[1%]': device "/dev/mw%-no%-such%-device" does not exist on this host
return {
  components = {
    app = { image = "busybox", devices = { "/dev/mw-no-such-device" } },
  },
}
