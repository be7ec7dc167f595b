//! Gives `libshmcast.so` its SONAME, `libshmcast.so.MAJOR`: programs linked
//! against it then ask for that name at run time, and a package can ship a
//! new major version beside the old one.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmcast.so.{major}");
    }
}
