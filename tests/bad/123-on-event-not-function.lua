-- expect: field 'on_event': must be a function%(event%)
return {
  components = {
    web = { image = "nginx", on_event = "http://127.0.0.1:9/hook" },
  },
}
