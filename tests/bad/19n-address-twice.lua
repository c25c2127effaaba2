-- expect: :6: component 'db': field 'networks.back': ipv4_address 172.28.0.5 on network back is also component api's
return {
  networks = { back = { subnet = "172.28.0.0/16" } },
  components = {
    api = { image = "app", networks = { back = { ipv4_address = "172.28.0.5" } } },
    db = { image = "app", networks = { back = { ipv4_address = "172.28.0.5" } } },
  },
}
