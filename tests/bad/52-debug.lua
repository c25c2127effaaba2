-- expect: 'debug' is not available in stack files
debug.sethook()
