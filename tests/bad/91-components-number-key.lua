-- expect: field 'components': must be a table of name = component, but has a list item %[2%]
return { components = { web = { image = "nginx" }, [2] = { image = "x" } } }
