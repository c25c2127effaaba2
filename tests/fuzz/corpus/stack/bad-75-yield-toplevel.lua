-- expect: 75%-yield%-toplevel%.lua: the stack file yielded
coroutine.yield(1)
return {}
