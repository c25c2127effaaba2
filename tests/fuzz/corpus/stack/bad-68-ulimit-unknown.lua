-- expect: field 'ulimits': unknown ulimit 'nofle' %(did you mean 'nofile'%?%)
return {
  components = {
    web = { image = "nginx", ulimits = { nofle = 1024 } },
  },
}
