-- expect: :3: field 'networks.back.subnet': bad subnet "172.28.0.0/40"
return {
  networks = { back = { subnet = "172.28.0.0/40" } },
  components = { api = { image = "app", networks = { "back" } } },
}
