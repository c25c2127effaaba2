-- expect: field 'command%[2%]': must be a string, got table
return {
  components = {
    web = { image = "nginx", command = { "run", {} } },
  },
}
