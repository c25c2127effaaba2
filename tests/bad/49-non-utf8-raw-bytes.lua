-- expect: field 'command%[1%]': must be valid UTF%-8 text
return {
  components = {
    web = { image = "nginx", command = { "runÿþ" } },
  },
}
