//! Test and bench hooks (feature `test-hooks`, `MESHCACHE_TEST_HOOKS` in the header): not
//! part of the installed API.

use std::hint::black_box;
use std::time::Instant;

use crate::cluster::block_on_get;
use crate::error::{arg, arg_mut, bytes_arg, ffi, out_arg};
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
/// nanoseconds per call: `Group::peek` into `*out_peek_ns`, and a blocking `Group::get`
/// (`Handle::block_on(group.get(key))`, what a Rust caller without async does) into
/// `*out_block_on_get_ns`; and `Group::get` polled once in place (what
/// `meshcache_group_get` does on a hit, without the C ABI) into `*out_poll_get_ns`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_bench_rust_get_hit(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    iters: u64,
    out_peek_ns: *mut f64,
    out_block_on_get_ns: *mut f64,
    out_poll_get_ns: *mut f64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        // Safety: `(key, key_len)` is readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        out_arg(out_peek_ns, "out_peek_ns")?;
        out_arg(out_block_on_get_ns, "out_block_on_get_ns")?;
        out_arg(out_poll_get_ns, "out_poll_get_ns")?;
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
            let v = block_on_get!(&g.rt, g.group.get(black_box(key)), || false)?;
            black_box(v);
        }
        let poll = t.elapsed().as_nanos() as f64 / n as f64;
        // Safety: both outputs are non-NULL and writable by contract.
        unsafe {
            *out_peek_ns = peek;
            *out_block_on_get_ns = get;
            *out_poll_get_ns = poll;
        }
        Ok(())
    })
}
