"""Cross-check the policy columns of `examples/hit_ratio.rs` with libcachesim, a reference
cache simulator (https://github.com/1a1a11a/libCacheSim, PyPI `libcachesim`).

    cargo run --release -p meshcache --example hit_ratio -- --write-traces /tmp/traces
    python3 -m venv /tmp/lcs-venv && /tmp/lcs-venv/bin/pip install libcachesim
    /tmp/lcs-venv/bin/python bench/libcachesim_check.py /tmp/traces

Every object has size 1, so the cache size is an entry count, as in hit_ratio.rs.
Prints hit ratios in percent (every request counted, cold misses included).
"""

import sys

import libcachesim as lcs


def hit_ratio(cache, path):
    reader = lcs.TraceReader(path, lcs.TraceType.PLAIN_TXT_TRACE)
    req_miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
    return 100.0 * (1.0 - req_miss_ratio)


def main(trace_dir):
    policies = [
        ("LRU", lambda n: lcs.LRU(n)),
        ("S3-FIFO", lambda n: lcs.S3FIFO(n)),
        ("W-TinyLFU", lambda n: lcs.WTinyLFU(n)),
        ("SIEVE", lambda n: lcs.Sieve(n)),
    ]
    print("| trace | cache | " + " | ".join(name for name, _ in policies) + " |")
    print("|---|---:|" + "---:|" * len(policies))
    with open(f"{trace_dir}/traces.tsv") as index:
        for line in index:
            name, cache = line.split()
            path = f"{trace_dir}/{name}.txt"
            cells = [f"{hit_ratio(make(int(cache)), path):.2f}" for _, make in policies]
            print(f"| {name} | {cache} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/traces")
