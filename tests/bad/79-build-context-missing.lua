-- expect: field 'build%.context': build context "%./nope" is not a directory
return {
  components = {
    web = { build = { context = "./nope" } },
  },
}
