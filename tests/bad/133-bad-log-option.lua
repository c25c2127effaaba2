-- expect: field 'logging.options.max%-size': must be a string
return {
  components = {
    app = { image = "busybox", logging = { driver = "json-file", options = { ["max-size"] = {} } } },
  },
}
