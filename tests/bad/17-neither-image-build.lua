-- expect: 17%-neither%-image%-build%.lua:4: component 'web': needs 'image' or 'build'
return {
  components = {
    web = { command = { "/bin/true" } },
  },
}
