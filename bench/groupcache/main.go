// Command groupcache measures a remote get through golang/groupcache on loopback, the way
// meshcache's remote bench (bench/src/remote.rs) measures its own: the caller peer (this
// process) gets keys that the owner peer (a child process in `serve` mode) owns, with no
// local copy, so every get is one HTTP round trip to the owner, which answers from its cache.
//
// It prints one JSON line on stdout:
//
//	{"size":100,"p50_us":123.4,"p99_us":234.5,"ops":{"1":1234.0,"16":5678.0,"50":9999.0}}
//
// Usage: go run . [--size 100] [--secs 2] [--callers 1,16,50]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/groupcache"
	"github.com/golang/groupcache/consistenthash"
)

const (
	group     = "bench"
	perCaller = 200 // keys each concurrent caller cycles through; callers never share one
	replicas  = 50  // HTTPPool's default
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("groupcache-bench: ")
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve(os.Args[2:])
		return
	}
	size := flag.Int("size", 100, "value size in bytes")
	secs := flag.Float64("secs", 2, "seconds per measurement")
	callersFlag := flag.String("callers", "1,16,50", "concurrent callers for the throughput runs")
	flag.Parse()
	var callers []int
	maxCallers := 50
	for _, s := range strings.Split(*callersFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad --callers %q", *callersFlag)
		}
		callers = append(callers, n)
		maxCallers = max(maxCallers, n)
	}
	dur := time.Duration(*secs * float64(time.Second))

	// Both listeners on 127.0.0.1, port 0; the owner's goes to the child as fd 3.
	callerLn := listen()
	ownerLn := listen()
	callerURL := "http://" + callerLn.Addr().String()
	ownerURL := "http://" + ownerLn.Addr().String()
	owner, ownerStdin := spawnOwner(ownerLn, ownerURL, callerURL, *size)
	ownerLn.Close() // the child holds its own copy

	// The caller: its own HTTPPool with peers [caller, owner] and a group that keeps no copy
	// (cacheBytes = 0: populateCache returns early), so every get goes to the owner.
	var localLoads atomic.Int64
	pool := groupcache.NewHTTPPoolOpts(callerURL, nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConns = 0                     // no limit
	tr.MaxIdleConnsPerHost = 4 * maxCallers // the default (2) would reconnect under load
	pool.Transport = func(context.Context) http.RoundTripper { return tr }
	pool.Set(callerURL, ownerURL)
	go func() { log.Fatal(http.Serve(callerLn, pool)) }()
	g := groupcache.NewGroup(group, 0, groupcache.GetterFunc(
		func(_ context.Context, key string, dest groupcache.Sink) error {
			localLoads.Add(1)
			return fmt.Errorf("caller loaded %q locally: the owner did not answer it", key)
		}))

	// Keys the owner owns, by the pool's own ring (HTTPPool's defaults: 50 replicas, crc32).
	ring := consistenthash.New(replicas, nil)
	ring.Add(callerURL, ownerURL)
	keys := make([]string, 0, maxCallers*perCaller)
	for i := 0; len(keys) < cap(keys); i++ {
		if k := "key-" + strconv.Itoa(i); ring.Get(k) == ownerURL {
			keys = append(keys, k)
		}
	}
	get := func(k string) {
		var v groupcache.ByteView
		if err := g.Get(context.Background(), k, groupcache.ByteViewSink(&v)); err != nil {
			log.Fatalf("get %q: %v", k, err)
		}
		if v.Len() != *size {
			log.Fatalf("get %q: %d bytes, want %d", k, v.Len(), *size)
		}
	}
	checkRemote := func(when string) {
		if n := localLoads.Load(); n != 0 {
			log.Fatalf("%s: the caller's getter ran %d times: keys not owned by the owner", when, n)
		}
	}

	for _, k := range keys { // warm-up: the owner loads and caches every key
		get(k)
	}
	checkRemote("warm-up")

	// Latency: one goroutine, sequential gets.
	lat := make([]time.Duration, 0, 1<<20)
	for i, end := 0, time.Now().Add(dur); ; i++ {
		t := time.Now()
		if !t.Before(end) {
			break
		}
		get(keys[i%len(keys)])
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		us := float64(lat[int(math.Ceil(p*float64(len(lat))))-1]) / 1e3
		return math.Round(us*10) / 10
	}

	// Throughput: c goroutines, each on keys of its own.
	ops := map[string]float64{}
	for _, c := range callers {
		var total atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		end := start.Add(dur)
		for id := 0; id < c; id++ {
			wg.Add(1)
			go func(own []string) {
				defer wg.Done()
				n := int64(0)
				for ; time.Now().Before(end); n++ {
					get(own[n%perCaller])
				}
				total.Add(n)
			}(keys[id*perCaller : (id+1)*perCaller])
		}
		wg.Wait()
		ops[strconv.Itoa(c)] = math.Round(float64(total.Load()) / time.Since(start).Seconds())
	}
	checkRemote("measurement")

	out, _ := json.Marshal(struct {
		Size int                `json:"size"`
		P50  float64            `json:"p50_us"`
		P99  float64            `json:"p99_us"`
		Ops  map[string]float64 `json:"ops"`
	}{*size, pct(0.50), pct(0.99), ops})
	fmt.Println(string(out))
	st := g.Stats
	log.Printf("%d latency samples; caller stats: gets %d, peer loads %d, peer errors %d, local loads %d",
		len(lat), st.Gets.Get(), st.PeerLoads.Get(), st.PeerErrors.Get(), st.LocalLoads.Get())

	ownerStdin.Close() // the owner exits when its stdin closes
	if err := owner.Wait(); err != nil {
		log.Printf("owner: %v", err)
	}
}

func listen() *net.TCPListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return ln.(*net.TCPListener)
}

// spawnOwner starts this program in `serve` mode on ln and waits (at most 10 s) for the line
// it writes once it serves.
func spawnOwner(ln *net.TCPListener, self, caller string, size int) (*exec.Cmd, io.Closer) {
	f, err := ln.File()
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(exe, "serve", self, caller, strconv.Itoa(size))
	cmd.ExtraFiles = []*os.File{f} // fd 3
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected line %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Process.Kill()
			log.Fatalf("owner did not get ready: %v", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		log.Fatal("owner not ready within 10 s")
	}
	return cmd, stdin
}

// serve is the owner peer: an HTTPPool on the listener at fd 3 (bound by the parent to
// 127.0.0.1), a group with a 256 MiB cache whose getter returns size bytes of 'x'.
func serve(args []string) {
	if len(args) != 3 {
		log.Fatal("usage: serve SELF_URL CALLER_URL SIZE")
	}
	self, caller := args[0], args[1]
	size, err := strconv.Atoi(args[2])
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		log.Fatal(err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		log.Fatalf("owner listener %v is not on loopback", ln.Addr())
	}
	value := []byte(strings.Repeat("x", size))
	pool := groupcache.NewHTTPPoolOpts(self, nil)
	pool.Set(caller, self)
	groupcache.NewGroup(group, 256<<20, groupcache.GetterFunc(
		func(_ context.Context, _ string, dest groupcache.Sink) error {
			return dest.SetBytes(value)
		}))
	go func() { log.Fatal(http.Serve(ln, pool)) }()
	os.Stdout.WriteString("ready\n")
	// Exit when stdin closes: the parent is done, or gone.
	io.Copy(io.Discard, os.Stdin)
}
