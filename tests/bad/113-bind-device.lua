-- expect: field 'volumes%[1%]': bind mount source "/dev/zero" is a character device
-- A device as a bind source is refused (files, directories and sockets are accepted).
return {
  components = {
    web = { image = "nginx", volumes = { "/dev/zero:/data/zero" } },
  },
}
