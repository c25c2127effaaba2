-- expect: 03%-error%-table%.lua: %(error object is a table value%)
error({ code = 1 })
