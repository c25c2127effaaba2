-- expect: field 'memory': bad size "lots"
return {
  components = {
    web = { image = "nginx", memory = "lots" },
  },
}
