-- expect: 13%-unknown%-field%.lua:6: component 'web': unknown field 'heartbeet' %(did you mean 'heartbeat'%?%)
return {
  components = {
    web = {
      image = "nginx",
      heartbeet = true,
    },
  },
}
