-- expect: field 'image': must be valid UTF%-8 text, got "ngi\xfenx"
return {
  components = {
    web = { image = "ngi\xfenx" },
  },
}
