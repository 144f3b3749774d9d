//! `gencert DIR`: writes fresh test certificates into DIR (see `meshcache_testkit::certs`).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: gencert DIR");
        std::process::exit(2);
    };
    let files = meshcache_testkit::certs::write(std::path::Path::new(&dir));
    println!("{}", files.ca.display());
}
