-- expect: on_event.*must be a function%(event%)
return {
  on_event = { url = "http://127.0.0.1:9/hook" },
  components = {
    web = { image = "nginx" },
  },
}
