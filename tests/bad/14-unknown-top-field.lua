-- expect: 14%-unknown%-top%-field%.lua:4: unknown field 'componets' %(did you mean 'components'%?%)
return {
  name = "demo",
  componets = { web = { image = "nginx" } },
}
