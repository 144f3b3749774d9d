package meshcache

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Go loader runs on a meshcache runtime thread (named "meshcache", not the thread
// that called Get), reached through the C loader callback; its errors and NotFound come
// back to the caller.
func TestLoaderRunsOnMeshcacheThread(t *testing.T) {
	cluster, err := NewCluster(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	before, beforeOther := meshcacheThreadLoads.Load(), otherThreadLoads.Load()
	var mu sync.Mutex
	calls := map[string]int{}
	g, err := cluster.NewGroup("users", "1MiB", func(key []byte) ([]byte, error) {
		mu.Lock()
		calls[string(key)]++
		mu.Unlock()
		switch string(key) {
		case "missing":
			return nil, ErrNotFound
		case "broken":
			return nil, errors.New("the database is down")
		case "panics":
			panic("a bug in the loader")
		}
		return []byte("user " + string(key)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for i := 0; i < 2; i++ { // the second get is a hit: no load
		v, err := g.Get([]byte("42"))
		if err != nil || string(v) != "user 42" {
			t.Fatalf("get 42: %q, %v", v, err)
		}
	}
	if _, err := g.Get([]byte("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	var merr *Error
	if _, err := g.Get([]byte("broken")); !errors.As(err, &merr) || !strings.Contains(merr.Message, "the database is down") {
		t.Fatalf("get broken: %v, want the loader's error", err)
	}
	if _, err := g.Get([]byte("panics")); !errors.As(err, &merr) || !strings.Contains(merr.Message, "a bug in the loader") {
		t.Fatalf("get panics: %v, want the loader's panic as an error", err)
	}
	if calls["42"] != 1 {
		t.Fatalf("key 42 loaded %d times, want 1", calls["42"])
	}
	if n := meshcacheThreadLoads.Load() - before; n != 4 {
		t.Fatalf("%d loads on a meshcache thread, want 4", n)
	}
	if n := otherThreadLoads.Load() - beforeOther; n != 0 {
		t.Fatalf("%d loads on a thread that is not meshcache's", n)
	}
}

// A Python node (target/pyenv's meshcache, MESHCACHE_PYTHON) driven over its stdin/stdout.
const pythonNode = `
import sys, threading, meshcache
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def load(key):
    k = key if isinstance(key, str) else bytes(key).decode()
    say("load " + k)
    return b"value of " + k.encode()
with meshcache.Cluster(listen="127.0.0.1:0") as cluster:
    say("addr " + cluster.advertise_addr)
    cluster.set_peers(sys.stdin.readline().split())
    group = cluster.group("users", loader=load)
    say("ready")
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "get":
            say("value " + cmd[1] + " " + group.get(cmd[1]).decode())
        elif cmd[0] == "quit":
            break
say("bye")
`

type pyNode struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	loads map[string]int
}

// expect returns the next line (other than a load, which it counts) starting with prefix.
func (p *pyNode) expect(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the Python node exited while we waited for %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return strings.TrimPrefix(line, prefix)
			}
			t.Fatalf("the Python node said %q, want %q...", line, prefix)
		case <-deadline:
			t.Fatalf("no %q from the Python node in 30 s", prefix)
		}
	}
}

func (p *pyNode) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func startPython(t *testing.T) *pyNode {
	py := os.Getenv("MESHCACHE_PYTHON")
	if py == "" {
		t.Skip("MESHCACHE_PYTHON (a Python with meshcache installed) is not set; make test-go sets it")
	}
	p := &pyNode{cmd: exec.Command(py, "-c", pythonNode), lines: make(chan string, 1024), loads: map[string]int{}}
	p.cmd.Stderr = os.Stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if k, ok := strings.CutPrefix(line, "load "); ok {
				p.mu.Lock()
				p.loads[k]++
				p.mu.Unlock()
				continue
			}
			p.lines <- line
		}
		close(p.lines)
	}()
	return p
}

// A Go node and a Python node, static peers: every key is loaded once in the cluster, by
// its owner's loader, whichever node asks.
func TestMixedClusterWithPython(t *testing.T) {
	py := startPython(t)
	pyAddr := py.expect(t, "addr ")

	cluster, err := NewCluster(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var mu sync.Mutex
	goLoads := map[string]int{}
	g, err := cluster.NewGroup("users", "1MiB", func(key []byte) ([]byte, error) {
		mu.Lock()
		goLoads[string(key)]++
		mu.Unlock()
		return []byte("value of " + string(key)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	goAddr, err := cluster.AdvertiseAddr()
	if err != nil {
		t.Fatal(err)
	}

	peers := []string{goAddr, pyAddr}
	py.send(t, strings.Join(peers, " "))
	if err := cluster.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	py.expect(t, "ready") // the Python node has the ring and the group
	if err := cluster.WaitForMembers(2, 10000); err != nil {
		t.Fatal(err)
	}
	before := meshcacheThreadLoads.Load()

	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			v, err := g.Get([]byte(k))
			if err != nil || string(v) != "value of "+k {
				t.Fatalf("Go get %s: %q, %v", k, v, err)
			}
			py.send(t, "get "+k)
			if got := py.expect(t, "value "+k+" "); got != "value of "+k {
				t.Fatalf("Python get %s: %q", k, got)
			}
		}
	}
	py.send(t, "quit")
	py.expect(t, "bye")
	if err := py.cmd.Wait(); err != nil {
		t.Fatalf("the Python node: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	py.mu.Lock()
	defer py.mu.Unlock()
	goTotal, pyTotal := 0, 0
	for _, k := range keys {
		if n := goLoads[k] + py.loads[k]; n != 1 {
			t.Errorf("%s loaded %d times (Go %d, Python %d), want once in the cluster", k, n, goLoads[k], py.loads[k])
		}
		goTotal += goLoads[k]
		pyTotal += py.loads[k]
	}
	if goTotal == 0 || pyTotal == 0 {
		t.Errorf("loads: Go %d, Python %d; want each node to own (and load) some of the %d keys", goTotal, pyTotal, len(keys))
	}
	if n := meshcacheThreadLoads.Load() - before; n != int64(goTotal) {
		t.Errorf("%d of the Go node's %d loads ran on a meshcache thread", n, goTotal)
	}
	t.Logf("%d keys: the Go node loaded %d, the Python node %d", len(keys), goTotal, pyTotal)
}
