-- expect: field 'cap_add%[1%]': unknown capability "NET_ADMN" %(did you mean 'NET_ADMIN'%?%)
return {
  components = {
    web = { image = "nginx", cap_add = { "NET_ADMN" } },
  },
}
