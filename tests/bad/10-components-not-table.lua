-- expect: field 'components': must be a table of name = component, got string
return { components = "web" }
