-- expect: 25%-bad%-component%-name%.lua:4: component 'Web': bad component name
return {
  components = {
    Web = { image = "nginx" },
  },
}
