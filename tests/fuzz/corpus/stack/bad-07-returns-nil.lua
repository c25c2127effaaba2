-- expect: must return a table .*got nil
return nil
