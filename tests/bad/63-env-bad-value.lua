-- expect: field 'env%.X': must be a string, number or boolean, got function
return {
  components = {
    web = { image = "nginx", env = { X = print } },
  },
}
