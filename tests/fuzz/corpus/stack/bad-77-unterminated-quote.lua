-- expect: field 'command': unterminated ' quote
return {
  components = {
    web = { image = "nginx", command = "echo 'hi" },
  },
}
