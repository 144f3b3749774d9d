// Package meshcache embeds a meshcache node in a Go program, over the C ABI
// (include/meshcache.h, linked with pkg-config: `make install PREFIX=...` installs
// libmeshcache and meshcache.pc).
//
//	cluster, err := meshcache.NewCluster(meshcache.Options{Listen: "127.0.0.1:0"})
//	users, err := cluster.NewGroup("users", "64MiB", func(key []byte) ([]byte, error) {
//		return []byte("user " + string(key)), nil // on a miss, on a meshcache thread
//	})
//	v, err := users.Get([]byte("42"))
//
// The loader is a Go func that meshcache calls from one of its own runtime threads
// (through the C loader callback, a cgo exported function, and a cgo.Handle naming the
// func): it may block, and runs concurrently for different keys.
package meshcache

/*
#cgo pkg-config: meshcache
#include <stdlib.h>
#include "loader.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// ErrNotFound is what a loader returns for a key that does not exist, and what Get
// returns then.
var ErrNotFound = errors.New("meshcache: not found")

// Loader loads the value of a key on a miss. It runs on a meshcache thread, not the
// goroutine that called Get; return ErrNotFound for a key that does not exist.
type Loader func(key []byte) ([]byte, error)

// Error is a meshcache failure: the C result code and its message.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("meshcache: %s (code %d)", e.Message, e.Code) }

// call runs f on one locked OS thread, so that the thread-local error message read after
// a failure is the one f's call left.
func call(f func() C.enum_meshcache_result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := f()
	switch r {
	case C.MESHCACHE_OK:
		return nil
	case C.MESHCACHE_NOT_FOUND:
		return ErrNotFound
	}
	return &Error{Code: int(r), Message: C.GoString(C.meshcache_last_error_message())}
}

// Options of a node; the zero value listens on 127.0.0.1 on a free port, alone.
type Options struct {
	Listen string   // "host:port" of the peer server; "" for 127.0.0.1:0
	Peers  []string // every node's advertised address (this one's may be among them)
}

// Cluster is this process's node.
type Cluster struct{ c *C.meshcache_cluster }

// NewCluster starts a node.
func NewCluster(o Options) (*Cluster, error) {
	var opts *C.meshcache_cluster_options
	if err := call(func() C.enum_meshcache_result { return C.meshcache_cluster_options_new(&opts) }); err != nil {
		return nil, err
	}
	defer C.meshcache_cluster_options_free(opts)
	if o.Listen != "" {
		s := C.CString(o.Listen)
		defer C.free(unsafe.Pointer(s))
		if err := call(func() C.enum_meshcache_result { return C.meshcache_cluster_options_set_listen(opts, s) }); err != nil {
			return nil, err
		}
	}
	for _, p := range o.Peers {
		s := C.CString(p)
		defer C.free(unsafe.Pointer(s))
		if err := call(func() C.enum_meshcache_result { return C.meshcache_cluster_options_add_peer(opts, s) }); err != nil {
			return nil, err
		}
	}
	cl := &Cluster{}
	if err := call(func() C.enum_meshcache_result { return C.meshcache_cluster_new(opts, &cl.c) }); err != nil {
		return nil, err
	}
	return cl, nil
}

// AdvertiseAddr is this node's name on the ring, what other nodes put in their peer lists.
func (cl *Cluster) AdvertiseAddr() (string, error) {
	var buf [128]C.char
	var n C.size_t
	if err := call(func() C.enum_meshcache_result {
		return C.meshcache_cluster_advertise_addr(cl.c, &buf[0], C.size_t(len(buf)), &n)
	}); err != nil {
		return "", err
	}
	return C.GoStringN(&buf[0], C.int(n)), nil
}

// SetPeers replaces the peer list (static membership).
func (cl *Cluster) SetPeers(peers []string) error {
	cs := C.malloc(C.size_t(len(peers)+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(cs)
	arr := unsafe.Slice((**C.char)(cs), len(peers)+1)
	for i, p := range peers {
		arr[i] = C.CString(p)
		defer C.free(unsafe.Pointer(arr[i]))
	}
	return call(func() C.enum_meshcache_result {
		return C.meshcache_cluster_set_peers(cl.c, (**C.char)(cs), C.size_t(len(peers)))
	})
}

// WaitForMembers blocks until the ring has exactly n members, for at most timeoutMs.
func (cl *Cluster) WaitForMembers(n int, timeoutMs uint64) error {
	return call(func() C.enum_meshcache_result {
		return C.meshcache_cluster_wait_for_members(cl.c, C.size_t(n), C.uint64_t(timeoutMs))
	})
}

// Close shuts the node down and frees it (its groups then return errors).
func (cl *Cluster) Close() {
	if cl.c != nil {
		C.meshcache_cluster_free(cl.c)
		cl.c = nil
	}
}

// Group is one named cache of a cluster.
type Group struct{ g *C.meshcache_group }

// NewGroup creates the group `name` with a capacity such as "64MiB" and a loader.
func (cl *Cluster) NewGroup(name, capacity string, load Loader) (*Group, error) {
	var opts *C.meshcache_group_options
	if err := call(func() C.enum_meshcache_result { return C.meshcache_group_options_new(&opts) }); err != nil {
		return nil, err
	}
	defer C.meshcache_group_options_free(opts)
	csize := C.CString(capacity)
	defer C.free(unsafe.Pointer(csize))
	if err := call(func() C.enum_meshcache_result { return C.meshcache_group_options_set_capacity_str(opts, csize) }); err != nil {
		return nil, err
	}
	h := cgo.NewHandle(load) // deleted by mcgoFreeLoader, when meshcache drops the loader
	if err := call(func() C.enum_meshcache_result { return C.mcgo_set_loader(opts, C.uintptr_t(h)) }); err != nil {
		h.Delete()
		return nil, err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	g := &Group{}
	if err := call(func() C.enum_meshcache_result { return C.meshcache_group_new(cl.c, cname, opts, &g.g) }); err != nil {
		return nil, err
	}
	return g, nil
}

// Get returns the value of key: cached, else from its owner, which loads it once in the
// whole cluster. Blocks on a miss.
func (g *Group) Get(key []byte) ([]byte, error) {
	var v C.meshcache_value
	ckey := C.CBytes(key)
	defer C.free(ckey)
	if err := call(func() C.enum_meshcache_result {
		return C.mcgo_group_get(g.g, (*C.uint8_t)(ckey), C.size_t(len(key)), &v)
	}); err != nil {
		return nil, err
	}
	defer C.meshcache_value_free(&v)
	return C.GoBytes(unsafe.Pointer(v.data), C.int(v.len)), nil
}

// Close frees the group's handle.
func (g *Group) Close() {
	if g.g != nil {
		C.meshcache_group_free(g.g)
		g.g = nil
	}
}

// Loads run on meshcache threads, and on Go's own threads (never expected): the tests
// read these.
var meshcacheThreadLoads, otherThreadLoads atomic.Int64

//export mcgoLoad
func mcgoLoad(h C.uintptr_t, key *C.uint8_t, keyLen C.size_t, out *C.meshcache_loader_out, onMeshcacheThread C.int) {
	if onMeshcacheThread != 0 {
		meshcacheThreadLoads.Add(1)
	} else {
		otherThreadLoads.Add(1)
	}
	value, err := runLoader(cgo.Handle(h).Value().(Loader), C.GoBytes(unsafe.Pointer(key), C.int(keyLen)))
	switch {
	case errors.Is(err, ErrNotFound):
		C.meshcache_loader_out_set_not_found(out, C.MESHCACHE_TTL_DEFAULT)
	case err != nil:
		msg := C.CString(err.Error())
		defer C.free(unsafe.Pointer(msg))
		C.meshcache_loader_out_set_error(out, msg)
	default:
		var p *C.uint8_t
		if len(value) > 0 {
			p = (*C.uint8_t)(unsafe.Pointer(&value[0]))
		}
		C.meshcache_loader_out_set_value(out, p, C.size_t(len(value)), C.MESHCACHE_TTL_DEFAULT)
	}
}

// runLoader calls load, turning a panic into an error (a panic must not unwind into C).
func runLoader(load Loader, key []byte) (value []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("loader panicked: %v", r)
		}
	}()
	return load(key)
}

//export mcgoFreeLoader
func mcgoFreeLoader(h C.uintptr_t) { cgo.Handle(h).Delete() }
