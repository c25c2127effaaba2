-- expect: field 'secrets': bad secret name 'bad name'
return {
  components = {
    db = { image = "postgres", secrets = { ["bad name"] = "./secret.txt" } },
  },
}
