-- expect: 04%-error%-multiline%.lua:2: first line second line$
error("first line\nsecond line")
