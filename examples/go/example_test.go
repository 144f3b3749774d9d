package meshcache_test

import (
	"fmt"

	"example.com/meshcache"
)

// The README's C program, in Go: one node, a Go loader, a get.
func Example() {
	cluster, err := meshcache.NewCluster(meshcache.Options{}) // one node on 127.0.0.1:<free port>
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	users, err := cluster.NewGroup("users", "64MiB", func(key []byte) ([]byte, error) {
		return []byte("user " + string(key)), nil // called on a miss, on a meshcache thread
	})
	if err != nil {
		panic(err)
	}
	defer users.Close()
	v, err := users.Get([]byte("42"))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(v)) // loaded once, then cached
	// Output: user 42
}
