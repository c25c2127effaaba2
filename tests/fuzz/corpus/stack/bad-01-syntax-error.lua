-- expect: 01%-syntax%-error%.lua:%d+: .*expected
return {
  components = {
    web = { image = "nginx" 
  },
}
