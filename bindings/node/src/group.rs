//! `Group`: one named cache of a cluster, and the options of `cluster.group()` and `set()`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{GetFuture, Now};
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown, sys};
use napi_derive::napi;

use crate::cluster::Node;
use crate::convert::{Out, buffer, key_bytes, key_list, millis, options, scope_arg, value_bytes, with_key};
use crate::errors::{map_error, range_error};
use crate::fast;
use crate::loader::JsLoader;
use crate::promise::{Track, or_reject, rejected, spawn};
use crate::stats::GroupStats;

/// Options of `cluster.group()`.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct GroupOptions {
    /// Byte budget of the store (keys + values + overhead): a number of bytes or a size
    /// such as `'256MiB'` or `'1.5GB'`. Default 64 MiB.
    pub capacity: Option<Either<f64, String>>,
    /// TTL of values whose loader or `set` gives none, in ms. Default: no expiry.
    pub ttl_ms: Option<f64>,
    /// How long a NotFound is remembered, in ms; 0 disables it. Default 5000.
    pub negative_ttl_ms: Option<f64>,
    /// Longest key, in UTF-8 bytes. Default 1024.
    pub max_key_len: Option<u32>,
    /// Largest value, in bytes. Default 8 MiB.
    pub max_value_len: Option<u32>,
    /// Mirror one in `n` values fetched from their owner on this node (0: never).
    /// Default 10.
    pub hot_sample: Option<u32>,
    /// Store shards (a power of two). Default: from capacity and CPUs.
    pub shards: Option<u32>,
    /// Called on the JS thread for a key this node owns and nobody has cached: once per
    /// key at a time in the whole cluster. May be async. Returns a Buffer, Uint8Array or
    /// string, or `{ value, ttlMs }`; throws `NotFoundError` for a key that does not
    /// exist. Whatever else it throws (any value) is the `cause` of the get's error; a
    /// `ttlMs` that is no duration rejects the get with a `RangeError`. Default: none
    /// (every miss is NotFound; fill the group with `set`).
    #[napi(ts_type = "Loader")]
    pub loader: Option<JsLoader>,
    /// How long the gets waiting on a load wait for the loader, in ms (> 0): then they
    /// reject with `MESHCACHE_TIMEOUT`, the key is free for the next get, and the late
    /// answer is dropped. Default: no limit.
    pub load_timeout_ms: Option<f64>,
    /// How many nodes hold each key written with `set` (or removed with `delete`): its
    /// owner and the next `replicas - 1` nodes of the ring. `set` writes to all of them
    /// and fails only if the owner did; a get whose owner cannot be reached asks the next
    /// replica before loading, so a written value survives `replicas - 1` dead nodes. At
    /// least 1. Default 1 (the owner only).
    pub replicas: Option<f64>,
    /// Whether values the loader returned go to the key's replicas too (costs every miss
    /// `replicas - 1` writes; for loads too expensive to repeat when an owner dies).
    /// Default false.
    pub replicate_loads: Option<bool>,
}

/// Options of `group.get()` and `group.getMany()`.
#[napi(object, object_to_js = false)]
pub struct GetOptions<'env> {
    /// How long this call waits, in ms (> 0): then it rejects with `MESHCACHE_TIMEOUT`,
    /// while the load it waited for goes on for the others. Read only if the call has to
    /// wait: a hit answers at once. Default: no deadline.
    pub timeout_ms: Option<f64>,
    /// Rejects the call with an `AbortError` (`code: 'ABORT_ERR'`, the signal's reason as
    /// `cause`) when aborted, or at once if it already is; the load it waited for goes on
    /// for the others. Handled in `lib.cjs`: declared here for the typings only.
    #[napi(ts_type = "AbortSignal")]
    #[allow(dead_code)]
    pub signal: Option<Unknown<'env>>,
}

/// Options of `group.set()`.
#[napi(object)]
pub struct SetOptions {
    /// TTL of this value in ms. Default: the group's `ttlMs`.
    pub ttl_ms: Option<f64>,
}

/// A named cache served by a `Cluster`. Keys are well-formed strings (a lone surrogate,
/// which has no UTF-8 form, is a `TypeError`); values are Buffers.
#[napi]
pub struct Group {
    group: meshcache::Group,
    /// Its id in `node.gets`.
    id: u64,
    /// Keeps the cluster running while this group is reachable from JS.
    node: Arc<Node>,
    /// Whether it has a `loadTimeoutMs`: then its gets are never left waiting only for a
    /// JS loader (see [`Gets`](crate::promise::Gets)).
    load_timeout: bool,
}

impl Group {
    pub(crate) fn new(group: meshcache::Group, id: u64, node: Arc<Node>, load_timeout: bool) -> Self {
        Group {
            group,
            id,
            node,
            load_timeout,
        }
    }
}

#[napi]
impl Group {
    /// The value of `key`: from this node, or from the key's owner, which loads it once in
    /// the whole cluster. Rejects with `MESHCACHE_NOT_FOUND` if the loader threw
    /// `NotFoundError`, `MESHCACHE_LOAD` (what the loader threw is the `cause`) if it
    /// failed, a `TypeError` for a key that is not a well-formed string or a loader result
    /// of the wrong type.
    ///
    /// Inside a loader, a get of the key it is loading rejects with
    /// `MESHCACHE_INVALID_ARGUMENT` (it would wait for itself).
    ///
    /// `options.timeoutMs` bounds the wait of a get that misses (`MESHCACHE_TIMEOUT`); a
    /// hit never reads it.
    #[napi(
        ts_args_type = "key: string, options?: GetOptions | undefined | null",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        key: Unknown<'env>,
        options: Option<Unknown<'env>>,
        // The loader's load scope, from `lib.cjs`: hidden from the typings.
        scope: Option<Unknown<'env>>,
    ) -> Result<Unknown<'env>> {
        get_promise(self, env, &key, options, scope.as_ref())
    }

    /// The cached value of `key` if it is on this node, else `undefined`. Synchronous;
    /// never loads, never waits.
    #[napi(ts_args_type = "key: string", ts_return_type = "Buffer | undefined")]
    pub fn peek<'env>(&self, env: &'env Env, key: Unknown<'env>) -> Result<Unknown<'env>> {
        let raw = peek_value(&self.group, env, &key)?;
        // SAFETY: `raw` was just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    }

    /// For `lib.cjs`: `{ peek, get, miss, pool }`, the fast paths of this group (see
    /// `fast.rs`). Called as `h.peek(key)` / `h.get(key)`, they answer a small cached value
    /// as the number `offset * 8192 + length` of a copy of it in `h.pool` (an
    /// ArrayBuffer); a `get` miss as `undefined`, to be followed by `h.miss(key, scope)`;
    /// anything else as `peek` / `get` do.
    #[napi(js_name = "_fast", skip_typescript)]
    pub fn fast<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        fast::handles(env, &self.group, self.id, &self.node, self.load_timeout)
    }

    /// The values of the keys that exist (missing ones are absent from the Map), loading
    /// misses concurrently, with one call per owner node. Inside a loader, asking for the
    /// key it is loading rejects with `MESHCACHE_INVALID_ARGUMENT`. `options.timeoutMs`
    /// bounds the whole call (`MESHCACHE_TIMEOUT`).
    #[napi(
        ts_args_type = "keys: string[], options?: GetOptions | undefined | null",
        ts_return_type = "Promise<Map<string, Buffer>>"
    )]
    pub fn get_many<'env>(
        &self,
        env: &'env Env,
        keys: Unknown<'env>,
        options: Option<Unknown<'env>>,
        // The loader's load scope, from `lib.cjs`: hidden from the typings.
        scope: Option<Unknown<'env>>,
    ) -> Result<Unknown<'env>> {
        let keys = match key_list(env, &keys) {
            Ok(k) => k,
            Err(e) => return rejected(env, e),
        };
        let limit = match deadline(env, options) {
            Ok(l) => l,
            Err(e) => return rejected(env, e),
        };
        let scope = match scope.as_ref().map(|s| scope_arg(env, s)).transpose() {
            Ok(s) => s.flatten().cloned(),
            Err(e) => return rejected(env, e),
        };
        let g = self.group.clone();
        let tracks = keys.iter().map(|k| (self.id, k.clone())).collect();
        let get = async move {
            meshcache::deadline::within(limit, g.get_many(&keys))
                .await
                .map(Out::Map)
        };
        // A deadline of its own (or the group's load timeout) ends it: it may keep the
        // process alive until then, as a get does.
        let bounded = limit.is_some() || self.load_timeout;
        let gets = &self.node.gets;
        let r = match scope {
            Some(scope) => gets.spawn_many(env, &self.node.rt, tracks, bounded, scope.run(get)),
            None => gets.spawn_many(env, &self.node.rt, tracks, bounded, get),
        };
        or_reject(env, r)
    }

    /// Caches `value` (a Buffer, Uint8Array or string) for `key` on its owner, for
    /// `options.ttlMs` or the group's TTL; other nodes drop their copies.
    #[napi(
        ts_args_type = "key: string, value: Buffer | Uint8Array | string, options?: SetOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: Unknown<'env>,
        value: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<Unknown<'env>> {
        let prepared = (|| {
            let k = key_bytes(env, &key)?;
            let v = value_bytes(env, &value)?;
            let o: Option<SetOptions> = self::options(env, options, "options")?;
            let ttl = match o.and_then(|o| o.ttl_ms) {
                Some(t) => Some(millis(env, t, "ttlMs")?),
                None => None,
            };
            Ok((k, v, ttl))
        })();
        let r = prepared.and_then(|(k, v, ttl)| {
            let g = self.group.clone();
            spawn(env, &self.node.rt, async move { g.set(&k, v, ttl).await }, |()| {
                Out::Undefined
            })
        });
        or_reject(env, r)
    }

    /// Removes `key` on its owner and every copy on every node.
    #[napi(ts_args_type = "key: string", ts_return_type = "Promise<void>")]
    pub fn delete<'env>(&self, env: &'env Env, key: Unknown<'env>) -> Result<Unknown<'env>> {
        let r = key_bytes(env, &key).and_then(|k| {
            let g = self.group.clone();
            spawn(env, &self.node.rt, async move { g.delete(&k).await }, |()| {
                Out::Undefined
            })
        });
        or_reject(env, r)
    }

    /// The group's counters.
    #[napi]
    pub fn stats(&self) -> GroupStats {
        self.group.stats().into()
    }

    /// Stops this group only: later calls fail with `MESHCACHE_CLOSED` and its store is
    /// emptied. `cluster.close()` closes every group.
    #[napi]
    pub fn close(&self, env: &Env) {
        self.group.close();
        self.node.gets.group_closed(env, self.id);
    }

    /// The group's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.group.name().to_string()
    }

    /// Whether the group (or its cluster) was closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.group.is_closed() || self.node.cluster().is_none()
    }
}

/// `group.get(key)`: a promise of the value (resolved at once for a hit); argument
/// errors reject, never throw. `scope` is the load scope of the caller's JS context
/// (`lib.cjs` passes it): a miss is asked again inside it, so that the core refuses a
/// loader's get of its own key.
fn get_promise<'env>(
    g: &Group,
    env: &'env Env,
    key: &Unknown<'env>,
    options: Option<Unknown<'env>>,
    scope: Option<&Unknown<'env>>,
) -> Result<Unknown<'env>> {
    let scope = match scope.map(|s| scope_arg(env, s)).transpose() {
        Ok(s) => s.flatten(),
        Err(e) => return rejected(env, e),
    };
    let group = &g.group;
    let now = with_key(env, key, |k| {
        let now = match (group.get_now(k), scope) {
            (Ok(Now::Pending(_)), Some(scope)) => {
                let _entered = scope.enter();
                group.get_now(k)
            }
            (now, _) => now,
        };
        now.map(|n| Got::new(n, k))
    });
    let now = match now {
        Ok(now) => now,
        Err(e) => return rejected(env, e),
    };
    match now {
        Ok(Got::Hit(v)) => Ok(PromiseRaw::resolve(env, Out::Buf(v))?.to_unknown()),
        Ok(Got::Miss(rest, k)) => spawn_miss(env, &g.node, g.load_timeout, (g.id, k), rest, options),
        Err(e) => rejected(env, map_error(env, &e)),
    }
}

/// The promise of a get that missed: `rest` runs on the runtime, within the caller's
/// `options.timeoutMs` if any (read here: a hit never pays for it). Argument errors reject.
/// `load_timeout`: whether the group has a `loadTimeoutMs`.
pub(crate) fn spawn_miss<'env>(
    env: &'env Env,
    node: &Node,
    load_timeout: bool,
    track: Track,
    rest: GetFuture,
    options: Option<Unknown<'env>>,
) -> Result<Unknown<'env>> {
    match deadline(env, options) {
        Ok(None) => node.gets.spawn(env, &node.rt, track, load_timeout, rest),
        Ok(limit @ Some(_)) => node.gets.spawn(
            env,
            &node.rt,
            track,
            true,
            meshcache::deadline::within(limit, rest),
        ),
        Err(e) => rejected(env, e),
    }
}

/// The caller's deadline of `get` / `getMany`: `options.timeoutMs`, a number of ms > 0.
fn deadline(env: &Env, options: Option<Unknown<'_>>) -> Result<Option<Duration>> {
    let o: Option<GetOptions<'_>> = self::options(env, options, "options")?;
    match o.and_then(|o| o.timeout_ms) {
        Some(0.0) => Err(range_error(env, "timeoutMs must be greater than 0, not 0")),
        Some(t) => millis(env, t, "timeoutMs").map(Some),
        None => Ok(None),
    }
}

/// A core `Now`, with a miss's key kept (a copy, made for misses only) for `node.gets`.
pub(crate) enum Got<T> {
    Hit(T),
    Miss(GetFuture, Bytes),
}

impl<T> Got<T> {
    pub(crate) fn new(now: Now<T>, key: &[u8]) -> Self {
        match now {
            Now::Ready(v) => Got::Hit(v),
            Now::Pending(rest) => Got::Miss(rest, Bytes::copy_from_slice(key)),
        }
    }
}

/// `group.peek(key)`: a Buffer with a copy of the cached value (made under the store's
/// read lock), or `undefined`.
fn peek_value(group: &meshcache::Group, env: &Env, key: &Unknown<'_>) -> Result<sys::napi_value> {
    match with_key(env, key, |k| group.peek_with(k, |v| buffer(env, v)))? {
        Ok(Some(v)) => v,
        Ok(None) => {
            let mut undefined = std::ptr::null_mut();
            // SAFETY: JS thread, live env.
            check_status!(unsafe { sys::napi_get_undefined(env.raw(), &mut undefined) })?;
            Ok(undefined)
        }
        Err(e) => Err(map_error(env, &e)),
    }
}
