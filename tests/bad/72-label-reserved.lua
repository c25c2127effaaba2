-- expect: field 'labels': label 'mw%.stack' is reserved for mw
return {
  components = {
    web = { image = "nginx", labels = { ["mw.stack"] = "other" } },
  },
}
