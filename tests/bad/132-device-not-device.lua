-- expect: field 'devices%[1%]': device "/etc" is a directory, not a device
return {
  components = {
    app = { image = "busybox", devices = { "/etc:/dev/etc" } },
  },
}
