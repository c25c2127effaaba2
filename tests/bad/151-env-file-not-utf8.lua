-- expect: :4: component 'web': field 'env_file%[1%]': env file "latin1%.env" is not UTF%-8 text %(line 2%)
return {
  components = {
    web = { image = "nginx", env_file = "latin1.env" },
  },
}
