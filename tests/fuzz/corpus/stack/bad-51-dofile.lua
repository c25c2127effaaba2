-- expect: 51%-dofile%.lua:2: 'dofile' is not available in stack files
dofile("/etc/passwd")
