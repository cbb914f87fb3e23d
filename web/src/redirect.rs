//! Where a login may send the browser back to.

/// `next` when it is a same-origin absolute path, else `home`. Only a path that starts
/// with one `/` and holds no control character (browsers drop tab and newline from
/// URLs, so `/<TAB>/host` becomes `//host`), no backslash (read as `/`) and no `//`
/// anywhere is followed; the check is on the decoded value, so it also keeps a header
/// value that could not be sent (a newline) from ever reaching the redirect.
#[must_use]
pub fn safe_next<'a>(next: Option<&'a str>, home: &'a str) -> &'a str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => home,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home";

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/cases/4"), HOME), "/cases/4");
        assert_eq!(
            safe_next(Some("/programme?hours=24"), HOME),
            "/programme?hours=24"
        );
        assert_eq!(safe_next(None, HOME), HOME);
    }

    #[test]
    fn paths_a_browser_would_turn_into_another_origin_go_home() {
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/\t/evil.example:8080/x",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/cases\nSet-Cookie: x=1",
            "/x//evil.example",
            "/\u{0}x",
            "/\u{7f}x",
            "/\u{85}x",
            "cases",
            "",
            "https:/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad), HOME), HOME, "{bad:?}");
        }
    }
}
