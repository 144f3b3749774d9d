module meshcache.dev/bench/groupcache

go 1.26

require github.com/golang/groupcache v0.0.0-20241129210726-2c02b8208cf8

require (
	github.com/golang/protobuf v1.5.4 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)
