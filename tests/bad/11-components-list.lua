-- expect: field 'components': must be a table of name = component, but has a list item %[1%]
return { components = { { image = "nginx" } } }
