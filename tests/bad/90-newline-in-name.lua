-- expect: component 'a\x0ab': bad component name
return { components = { ["a\nb"] = { image = "x" } } }
