-- expect: field 'scale': must be between 0 and 1000, got %-1
return {
  components = {
    web = { image = "nginx", scale = -1 },
  },
}
