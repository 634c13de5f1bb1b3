//! The embedded demo chat page (served only by the embedded default configuration).
//!
//! The page (`demo/index.html`, `demo/app.js`, `demo/style.css`) is compiled into the binary
//! with `include_bytes!`, so it works offline and from any working directory. It is a small
//! hand-written client of the v2 JSON protocol — no third-party JavaScript.
//!
//! Contract with the HTTP router:
//! * [`asset`] maps a request path (already stripped of any mount prefix) to a body and its
//!   content type. The page references `app.js` and `style.css` by *relative* URL, so it can be
//!   mounted at `/` or under a prefix ending in `/` (e.g. `/demo/`).
//! * `GET /demo/token?name=<name>` (see [`TOKEN_PATH`]): the router validates `name` with
//!   [`validate_demo_name`] (400 on `None`) and answers `200 {"token":"<HS256 JWT>"}` with
//!   `sub = name` and `info = {"name": name}`. The page treats 404 as "no demo token endpoint"
//!   and connects without a token (insecure mode); any other 4xx is shown to the user.

/// Path of the demo token endpoint the page calls.
pub const TOKEN_PATH: &str = "/demo/token";

/// Longest accepted demo name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

const INDEX_HTML: &[u8] = include_bytes!("demo/index.html");
const APP_JS: &[u8] = include_bytes!("demo/app.js");
const STYLE_CSS: &[u8] = include_bytes!("demo/style.css");

/// Returns `(content type, body)` of the demo asset at `path`, or `None` if there is none.
///
/// `path` is the URL path without query string: `/` and `/index.html` give the page,
/// `/app.js` and `/style.css` its script and stylesheet.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        _ => None,
    }
}

/// Validates a display name for the demo token endpoint.
///
/// The name is trimmed; it must then be 1..=32 characters made of letters, digits (Unicode
/// alphanumerics), ASCII space, `-` or `_`. Returns the trimmed name, or `None` if invalid.
/// The result is safe to use as a JWT `sub` and to embed in JSON `info`.
pub fn validate_demo_name(name: &str) -> Option<String> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        return None;
    }
    let ok = name
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_');
    ok.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_with_utf8_content_types() {
        let (ct, body) = asset("/").unwrap_or(("", b""));
        assert_eq!(ct, "text/html; charset=utf-8");
        let html = std::str::from_utf8(body).unwrap_or("");
        for id in [
            "id=\"name\"",
            "id=\"join\"",
            "id=\"message\"",
            "id=\"send\"",
            "id=\"messages\"",
            "id=\"presence\"",
            "id=\"status\"",
        ] {
            assert!(html.contains(id), "index.html lacks {id}");
        }
        // Relative references only, and no third-party scripts.
        assert!(html.contains("<script src=\"app.js\"></script>"));
        for external in ["src=\"http", "src=\"//", "href=\"http", "href=\"//"] {
            assert!(!html.contains(external), "external reference {external}");
        }

        assert_eq!(asset("/index.html").map(|a| a.1.len()), Some(body.len()));
        assert_eq!(
            asset("/app.js").map(|a| a.0),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("/style.css").map(|a| a.0),
            Some("text/css; charset=utf-8")
        );
        assert!(asset("/nope.js").is_none());
        assert!(asset("/../Cargo.toml").is_none());

        let js = asset("/app.js").map(|a| a.1).unwrap_or(b"");
        let js = std::str::from_utf8(js).unwrap_or("");
        assert!(js.contains("/connection/websocket"));
        assert!(js.contains(TOKEN_PATH));
    }

    #[test]
    fn accepts_reasonable_names() {
        assert_eq!(validate_demo_name("alice").as_deref(), Some("alice"));
        assert_eq!(
            validate_demo_name("  Ada L_2-x ").as_deref(),
            Some("Ada L_2-x")
        );
        assert_eq!(validate_demo_name("José").as_deref(), Some("José"));
        let max = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(validate_demo_name(&max), Some(max.clone()));
        // Counted in characters, not bytes.
        let wide = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(validate_demo_name(&wide), Some(wide.clone()));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "   ",
            "\t",
            "a\"b",
            "<script>",
            "a\nb",
            "a\tb",
            "x.y",
            "a/b",
            "{}",
            "name@host",
        ] {
            assert_eq!(validate_demo_name(bad), None, "{bad:?} should be rejected");
        }
        assert_eq!(validate_demo_name(&"a".repeat(MAX_NAME_CHARS + 1)), None);
    }
}
