-- expect: :5: component 'api': field 'networks.back': ipv4_address 10.9.0.5 is not in network back's subnet 172.28.0.0/16
return {
  networks = { back = { subnet = "172.28.0.0/16" } },
  components = {
    api = { image = "app", networks = { back = { ipv4_address = "10.9.0.5" } } },
  },
}
