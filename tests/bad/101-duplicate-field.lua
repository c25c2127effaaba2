-- expect: 101%-duplicate%-field%.lua:7: component 'web': field 'image' is given twice %(lines 5 and 7%)
return {
  components = {
    web = {
      image = "nginx",
      command = { "a" },
      ["image"] = "httpd",
    },
  },
}
