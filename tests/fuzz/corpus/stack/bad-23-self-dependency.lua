-- expect: component 'a': field 'depends_on': dependency cycle: a %-> a$
return {
  components = {
    a = { image = "x", depends_on = { "a" } },
  },
}
