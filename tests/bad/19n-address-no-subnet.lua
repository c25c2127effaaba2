-- expect: :5: component 'api': field 'networks.back': network "back" has no 'subnet'; the engine gives static addresses only on a user%-configured subnet
return {
  networks = { back = {} },
  components = {
    api = { image = "app", networks = { back = { ipv4_address = "172.28.0.5" } } },
  },
}
