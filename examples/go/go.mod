module example.com/meshcache

go 1.21
