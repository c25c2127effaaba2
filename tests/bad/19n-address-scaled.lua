-- expect: :5: component 'api': field 'networks.back': has a static ipv4_address and scale 2
return {
  networks = { back = { subnet = "172.28.0.0/16" } },
  components = {
    api = { image = "app", scale = 2, networks = { back = { ipv4_address = "172.28.0.5" } } },
  },
}
