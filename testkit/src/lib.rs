//! What meshcache's tests, examples and benches share, as a dev-only crate (core's
//! `[dev-dependencies]`): a deterministic Zipf workload ([`zipf`]), in-process nodes for
//! the cluster tests ([`cluster`]), a node run as a separate process and driven over
//! stdin/stdout ([`node`]); a real etcd ([`etcd`]) and a DNS server ([`dns`]) for the
//! membership tests; behind the `contenders` feature, the caches the throughput
//! bench and example race against each other ([`contenders`]); behind `certs`, test
//! certificates made with rcgen ([`certs`]). Its `demo` binary is `make demo`; `gencert`
//! writes test certificates.

#[cfg(feature = "certs")]
pub mod certs;
pub mod cluster;
pub mod dns;
pub mod etcd;
pub mod http;
pub mod node;
pub mod zipf;

#[cfg(feature = "contenders")]
pub mod contenders;
