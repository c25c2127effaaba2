-- expect: 43%-read%-undeclared%.lua:2: undeclared global 'pirnt' %(did you mean 'print'%?%)
pirnt("hello")
return {}
