//! Which hosts a connector's code calls: URL literals in its Rust sources.
//!
//! A string literal that starts with `http://` or `https://` is a URL the code may call, and so
//! is one that starts with `//host` (a scheme-relative URL, which `fetch` resolves against the
//! base URL's scheme onto *another host*). Relative paths (`/v1/invoices`) resolve against the
//! installation's base URL, one of the declared hosts, and need no check. A URL whose host is
//! computed (`"https://{}.example.com"`, `"https://"` followed by a variable) cannot be checked
//! statically; `fetch` refuses undeclared hosts at run time anyway, and the evidence counts
//! them.
//!
//! Test code may use hosts no real connector calls: loopback addresses, `localhost` (and
//! `*.localhost`), the documentation domains `example.com`, `example.org`, `example.net` (and
//! their subdomains), and the reserved `.test`, `.example` and `.invalid` names.

use std::net::IpAddr;

use url::{Host, Url};

/// What a literal says about hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlHost {
    /// The literal is a URL on this host (lowercase; IPv6 in brackets).
    Host(String),
    /// The literal is a URL whose host is computed at run time.
    Computed,
}

/// The host of the URL `literal` is, if it is one.
pub(crate) fn literal_host(literal: &str) -> Option<UrlHost> {
    let trimmed = literal.trim_start();
    let lower = trimmed.get(..8).unwrap_or(trimmed).to_ascii_lowercase();
    let (url_text, rest) = if lower.starts_with("https://") {
        (trimmed.to_owned(), &trimmed[8..])
    } else if lower.starts_with("http://") {
        (trimmed.to_owned(), &trimmed[7..])
    } else if let Some(rest) = trimmed.strip_prefix("//") {
        // Scheme-relative: only when a host name follows (not `// comment`-like text).
        if !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[') {
            return None;
        }
        (format!("https:{trimmed}"), rest)
    } else {
        return None;
    };
    let authority_end = rest
        .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty() || authority.contains(['{', '}', '$']) {
        return Some(UrlHost::Computed);
    }
    // Parse only the scheme and authority: the rest may be a format string.
    let scheme_end = url_text.len() - rest.len();
    let head = &url_text[..scheme_end + authority_end];
    match Url::parse(head)
        .ok()
        .and_then(|url| url.host().map(|h| h.to_owned()))
    {
        Some(Host::Domain(domain)) => Some(UrlHost::Host(
            domain.trim_end_matches('.').to_ascii_lowercase(),
        )),
        Some(Host::Ipv4(ip)) => Some(UrlHost::Host(ip.to_string())),
        Some(Host::Ipv6(ip)) => Some(UrlHost::Host(format!("[{ip}]"))),
        None => Some(UrlHost::Computed),
    }
}

/// Whether test code may use `host` without declaring it.
pub(crate) fn allowed_in_tests(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback() || ip.is_unspecified();
    }
    const NAMES: &[&str] = &["localhost", "example.com", "example.org", "example.net"];
    const RESERVED_TLDS: &[&str] = &["localhost", "test", "example", "invalid"];
    NAMES
        .iter()
        .any(|name| host == *name || host.ends_with(&format!(".{name}")))
        || RESERVED_TLDS
            .iter()
            .any(|tld| host.ends_with(&format!(".{tld}")))
}

/// Whether a file is test code by its path: under a `tests/` or `benches/` directory, or
/// named `tests.rs`, `test.rs`, `*_test.rs` or `*_tests.rs`.
pub(crate) fn is_test_path(relative: &str) -> bool {
    let mut parts: Vec<&str> = relative.split('/').collect();
    let file = parts.pop().unwrap_or_default();
    parts.iter().any(|dir| matches!(*dir, "tests" | "benches"))
        || matches!(file, "tests.rs" | "test.rs")
        || file.ends_with("_test.rs")
        || file.ends_with("_tests.rs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Option<UrlHost> {
        Some(UrlHost::Host(name.to_owned()))
    }

    #[test]
    fn hosts_of_literals() {
        let cases = [
            ("https://api.stripe.com/v1/invoices", host("api.stripe.com")),
            ("https://API.Stripe.com", host("api.stripe.com")),
            ("HTTP://api.stripe.com.:443/x?y#z", host("api.stripe.com")),
            ("https://user:pw@api.hubapi.com/x", host("api.hubapi.com")),
            ("http://127.0.0.1:8080/x", host("127.0.0.1")),
            ("http://[::1]:9/x", host("[::1]")),
            (
                "https://api.airtable.com/v0/{base}/{table}",
                host("api.airtable.com"),
            ),
            ("//evil.test/x", host("evil.test")),
            ("https://{}.example.com/x", Some(UrlHost::Computed)),
            ("https://", Some(UrlHost::Computed)),
            ("https://${HOST}/x", Some(UrlHost::Computed)),
            ("/v1/invoices", None),
            ("// not a url", None),
            ("see https://docs.stripe.com", None),
            ("api.stripe.com", None),
        ];
        for (literal, expected) in cases {
            assert_eq!(literal_host(literal), expected, "{literal}");
        }
    }

    #[test]
    fn test_only_hosts() {
        for ok in [
            "localhost",
            "api.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "0.0.0.0",
            "example.com",
            "api.example.org",
            "example.net",
            "upstream.test",
            "fake.example",
            "nowhere.invalid",
        ] {
            assert!(allowed_in_tests(ok), "{ok}");
        }
        for no in [
            "api.stripe.com",
            "example.com.evil.io",
            "notexample.com",
            "10.0.0.1",
        ] {
            assert!(!allowed_in_tests(no), "{no}");
        }
    }

    #[test]
    fn test_paths() {
        for yes in [
            "tests/it/main.rs",
            "benches/b.rs",
            "src/tests.rs",
            "src/client_test.rs",
        ] {
            assert!(is_test_path(yes), "{yes}");
        }
        for no in ["src/lib.rs", "src/testing.rs", "build.rs", "src/contest.rs"] {
            assert!(!is_test_path(no), "{no}");
        }
    }
}
