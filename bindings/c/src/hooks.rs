//! Test and bench hooks (feature `test-hooks`, `MESHCACHE_TEST_HOOKS` in the header): not
//! part of the installed API.

use std::ffi::{CString, c_char};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use meshcache::{GroupStats, Now, PeerStats, RingStats, ServerStats};

use crate::error::{arg, arg_mut, bytes_arg, ffi, ffi_infallible, invalid, out_arg};
use crate::{meshcache_group, meshcache_loader_out, meshcache_result};

/// Test hook: once the loader callback returns, Rust panics on the load path (on the
/// loader's thread). The get that waited for the load returns `MESHCACHE_PANIC`; the
/// process lives on and the key is not stuck.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_loader_out_inject_panic(
    out: *mut meshcache_loader_out,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `out` is the live loader output by contract.
        unsafe { arg_mut(out, "out") }?.inject_panic = true;
        Ok(())
    })
}

/// Test hook: panics inside the panic boundary of an exported function, which returns
/// `MESHCACHE_PANIC`.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_test_panic() -> meshcache_result {
    ffi(|| panic!("panic requested by meshcache_test_panic"))
}

/// Bench hook: times `iters` hits of the key through the Rust API on the same group, in
/// nanoseconds per call: `Group::peek` into `*out_peek_ns`; a blocking `Group::get`
/// (`Handle::block_on(group.get(key))`) into `*out_block_on_get_ns`; and `Group::get_now`
/// answering `Now::Ready` (what `meshcache_group_get` does on a hit, without the C ABI)
/// into `*out_get_now_ns`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_bench_rust_get_hit(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    iters: u64,
    out_peek_ns: *mut f64,
    out_block_on_get_ns: *mut f64,
    out_get_now_ns: *mut f64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        // Safety: `(key, key_len)` is readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        out_arg(out_peek_ns, "out_peek_ns")?;
        out_arg(out_block_on_get_ns, "out_block_on_get_ns")?;
        out_arg(out_get_now_ns, "out_get_now_ns")?;
        let n = iters.max(1);
        let t = Instant::now();
        for _ in 0..n {
            let v = g.group.peek(black_box(key))?;
            black_box(v);
        }
        let peek = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let v = g.rt.block_on(g.group.get(black_box(key)))?;
            black_box(v);
        }
        let get = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let v = match g.group.get_now(black_box(key))? {
                Now::Ready(v) => v,
                Now::Pending(_) => return Err(invalid("the bench key is not resident").into()),
            };
            black_box(v);
        }
        let get_now = t.elapsed().as_nanos() as f64 / n as f64;
        // Safety: the outputs are non-NULL and writable by contract.
        unsafe {
            *out_peek_ns = peek;
            *out_block_on_get_ns = get;
            *out_get_now_ns = get_now;
        }
        Ok(())
    })
}

/// `names` joined with commas, as a C string that lives for the rest of the process.
fn joined(cell: &'static OnceLock<CString>, names: impl FnOnce() -> Vec<String>) -> *const c_char {
    cell.get_or_init(|| CString::new(names().join(",")).unwrap_or_default())
        .as_ptr()
}

/// Test hook: the core's names of a group's stats, in its order, comma-separated: the
/// counters of `GroupStats::counters()`, then `main.<field>` and `hot.<field>` for each
/// field of `TierStats::fields()`. The C tests compare it with the fields of
/// `meshcache_group_stats`. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_test_group_stats_names() -> *const c_char {
    static NAMES: OnceLock<CString> = OnceLock::new();
    ffi_infallible(c"".as_ptr(), || {
        joined(&NAMES, || {
            let s = GroupStats::default();
            let mut names: Vec<String> = s.counters().iter().map(|(n, _)| n.to_string()).collect();
            for (tier, t) in s.tiers() {
                names.extend(t.fields().iter().map(|(n, _)| format!("{tier}.{n}")));
            }
            names
        })
    })
}

/// Test hook: the names of a peer's stats in every language, comma-separated: `addr`,
/// `breaker`, then the counters of `PeerStats::fields()`. The C tests compare it with the
/// fields of `meshcache_peer_stats`. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_test_peer_stats_names() -> *const c_char {
    static NAMES: OnceLock<CString> = OnceLock::new();
    ffi_infallible(c"".as_ptr(), || {
        joined(&NAMES, || {
            let mut names = vec!["addr".to_string(), "breaker".to_string()];
            names.extend(PeerStats::default().fields().iter().map(|(n, _)| n.to_string()));
            names
        })
    })
}

/// Test hook: the core's names of a node's server stats (`ServerStats::fields()`), in
/// its order, comma-separated. The C tests compare it with the fields of
/// `meshcache_server_stats`. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_test_server_stats_names() -> *const c_char {
    static NAMES: OnceLock<CString> = OnceLock::new();
    ffi_infallible(c"".as_ptr(), || {
        joined(&NAMES, || {
            ServerStats::default()
                .fields()
                .iter()
                .map(|(n, _)| n.to_string())
                .collect()
        })
    })
}

/// Test hook: the core's names of a node's ring in its stats (`RingStats::fields()`), in
/// its order, comma-separated. The C tests compare it with the names of the
/// `meshcache_cluster_stats_ring_*` accessors. A static string.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_test_ring_stats_names() -> *const c_char {
    static NAMES: OnceLock<CString> = OnceLock::new();
    ffi_infallible(c"".as_ptr(), || {
        joined(&NAMES, || {
            RingStats::fields().iter().map(|n| n.to_string()).collect()
        })
    })
}
