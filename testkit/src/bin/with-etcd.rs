//! `with-etcd COMMAND [ARGS...]`: runs COMMAND with a fresh etcd on loopback ports (a
//! temporary data directory; Debian's `etcd-server`), its endpoint in
//! `MESHCACHE_TEST_ETCD` (`127.0.0.1:<port>`), and stops etcd when COMMAND ends, whatever
//! its outcome. The bindings' suites run under it: one etcd per suite.

use std::process::{Command, ExitCode};

use meshcache_testkit::etcd::Etcd;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-etcd COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let etcd = Etcd::start();
    let status = Command::new(&program)
        .args(args)
        .env("MESHCACHE_TEST_ETCD", etcd.endpoint())
        .status();
    drop(etcd);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c.clamp(1, 255) as u8)),
        Err(e) => {
            eprintln!("with-etcd: cannot run {program}: {e}");
            ExitCode::from(127)
        }
    }
}
