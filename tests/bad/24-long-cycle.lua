-- expect: dependency cycle: b %-> c %-> d %-> b$
return {
  components = {
    a = { image = "x", depends_on = { "b" } },
    b = { image = "x", depends_on = { "c" } },
    c = { image = "x", depends_on = { "d" } },
    d = { image = "x", depends_on = { "b" } },
  },
}
