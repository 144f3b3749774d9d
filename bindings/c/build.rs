//! Gives the shared library a SONAME, so that programs linked with `-lmeshcache` record
//! `libmeshcache.so.<abi>` and keep working across compatible upgrades.
//!
//! The ABI version is the major version, or `0.<minor>` while the major is 0 (semver
//! allows breaking changes between 0.x minors).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" { format!("0.{minor}") } else { major };
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmeshcache.so.{abi}");
    } else if os == "macos" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libmeshcache.{abi}.dylib");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
