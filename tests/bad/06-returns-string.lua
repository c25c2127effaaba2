-- expect: must return a table .*got string
return "web"
