-- expect: component 'db': field 'secrets%.pw': secret file "%./no%-such%-secret%.txt" not found
return {
  components = {
    db = { image = "postgres", secrets = { pw = "./no-such-secret.txt" } },
  },
}
