//! What the web pages carry for their scripts, read once for every crate's tests
//! (included by `#[path]`).
#![allow(dead_code)]

/// The CSRF token in a page's `<meta name="csrf-token">`, which its scripts send back.
pub fn csrf_meta(html: &str) -> String {
    html.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf meta")
        .to_owned()
}
