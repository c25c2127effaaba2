-- expect: field 'env': bad variable name 'MY VAR'
return {
  components = {
    web = { image = "nginx", env = { ["MY VAR"] = 1 } },
  },
}
