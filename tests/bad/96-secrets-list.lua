-- expect: field 'secrets': must be a table of name = value, but has a list item %[1%]
return {
  components = {
    web = { image = "nginx", secrets = { "./secret.txt" } },
  },
}
