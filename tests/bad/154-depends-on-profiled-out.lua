-- expect: :5: component 'web': field 'depends_on': 'debugger' runs only with profile debug or tools, which is not active %(mw run %-%-profile debug%)
return {
  components = {
    debugger = { image = "app", profiles = { "debug", "tools" } },
    web = { image = "app", depends_on = { "debugger" } },
  },
}
