//! What meshcache's tests, examples and benches share, as a dev-only crate (core's
//! `[dev-dependencies]`): a deterministic Zipf workload ([`zipf`]), a meshcache node run as
//! a separate process and driven over stdin/stdout ([`node`]), and, behind the
//! `contenders` feature, the caches the throughput bench and example race against each
//! other ([`contenders`]), and behind `certs`, test certificates made with rcgen
//! ([`certs`]). Its `demo` binary is `make demo`; `gencert` writes test certificates.

#[cfg(feature = "certs")]
pub mod certs;
pub mod node;
pub mod zipf;

#[cfg(feature = "contenders")]
pub mod contenders;
