-- expect: component 'web': has both 'image' and 'build'; give one
return {
  components = {
    web = { image = "nginx", build = "." },
  },
}
