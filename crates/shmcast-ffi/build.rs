//! Gives `libshmcast.so` its SONAME, `libshmcast.so.MAJOR`, when packaged:
//! programs linked against the packaged library then ask for that name at
//! run time, and a package can ship a new major version beside the old one.
//! Only when `SHMCAST_SONAME` is set (scripts/dist sets it): cargo leaves a
//! plain `libshmcast.so` in target/ with no `.so.MAJOR` beside it, so a
//! program linked against a build from source (the README's `gcc ...
//! -lshmcast`, the CMake example) would ask at run time for a file that is
//! not there.

fn main() {
    println!("cargo:rerun-if-env-changed=SHMCAST_SONAME");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("SHMCAST_SONAME").is_some() {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmcast.so.{major}");
    }
}
