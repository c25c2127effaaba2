-- expect: dependency cycle: a %-> b %-> a$
return {
  components = {
    a = { image = "x", depends_on = { "b" } },
    b = { image = "x", depends_on = { "a" } },
  },
}
