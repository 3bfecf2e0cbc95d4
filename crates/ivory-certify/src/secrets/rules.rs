//! The secret rules, kept as data: one row per kind of live-looking secret.
//!
//! Every pattern names two groups: `secret` (the value, which is gated, fingerprinted and never
//! printed) and `prefix` (the public part shown in the redacted preview: `sk_live_`, a PEM
//! header, or the name a generic value is assigned to). `docs/specs/secret-scan.md` documents
//! this table for connector authors; a test keeps the two in step.
//!
//! Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` stops the lazy DFA on non-ASCII
//! text, and the rule set then runs about 40 times slower.

use regex::{Regex, RegexSet};

/// How a rule's matches are judged before they become findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// A provider-specific token: any match is a finding unless the value is obviously fake.
    Token,
    /// A private key: any match is a finding. Fake markers do not apply (key bodies are
    /// base64 and routinely hold long runs such as `AAAAAAAA`); list a test key in the
    /// allow-list file instead.
    PrivateKey,
    /// A value assigned to a secret-like name: a finding only when it looks random (length,
    /// Shannon entropy, character mix), is not obviously fake, and the name does not describe
    /// the secret rather than hold it (`token_url`, `page_token`, …).
    Assignment,
}

/// One secret rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    id: &'static str,
    title: &'static str,
    pattern: &'static str,
    gate: Gate,
}

impl Rule {
    /// The stable id findings carry and allow-list entries name, such as
    /// `stripe-live-secret-key`.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// What the rule finds, for people.
    pub fn title(&self) -> &'static str {
        self.title
    }

    /// The regular expression (Rust `regex` syntax).
    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    /// Whether the "obviously fake" markers can exempt a match (false only for private keys).
    pub fn fake_markers_apply(&self) -> bool {
        self.gate != Gate::PrivateKey
    }

    /// Whether the rule is a generic name-based one, gated by entropy.
    pub fn is_generic(&self) -> bool {
        self.gate == Gate::Assignment
    }

    pub(crate) fn gate(&self) -> Gate {
        self.gate
    }
}

/// The names a generic value must be assigned to (case-insensitive, anywhere in the name).
/// The generic patterns spell it out (`concat!` takes only literals); a test keeps them equal.
#[cfg(test)]
const SECRET_NAMES: &str =
    r"(?i:secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|token|password|passwd|pwd)";

/// Every rule, in the order findings on the same position are preferred.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        id: "stripe-live-secret-key",
        title: "Stripe live secret key (sk_live_…)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>sk_live_)[0-9A-Za-z]{20,247})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "stripe-live-restricted-key",
        title: "Stripe live restricted key (rk_live_…)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>rk_live_)[0-9A-Za-z]{20,247})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "stripe-webhook-secret",
        title: "Stripe or Standard Webhooks signing secret (whsec_ with a realistic body)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>whsec_)[A-Za-z0-9+/]{24,256}={0,2})",
        gate: Gate::Token,
    },
    Rule {
        id: "hubspot-private-app-token",
        title: "HubSpot private-app access token (pat-na1-<uuid>, pat-eu1-<uuid>)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>pat-(?:na|eu)1-)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "airtable-personal-access-token",
        title: "Airtable personal access token (pat<14 alphanumerics>.<64 hex>)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>pat)[A-Za-z0-9]{14}\.[0-9a-f]{64})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "aws-access-key-id",
        title: "AWS access key id (AKIA…, ASIA…)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "github-token",
        title: "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_)",
        pattern: r"(?-u:\b)(?P<secret>(?P<prefix>gh[pousr]_)[A-Za-z0-9]{36,251})(?-u:\b)",
        gate: Gate::Token,
    },
    Rule {
        id: "private-key",
        title: "PEM private key (a BEGIN … PRIVATE KEY header followed by a key body)",
        // The line breaks may be real or written as `\n` inside a string literal; optional
        // `Proc-Type:`-style header lines may sit between the header and the body.
        pattern: r"(?P<secret>(?P<prefix>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)[ \t]*(?:\r?\n|\\r\\n|\\n)(?:[A-Za-z-]+:[^\r\n\\]*(?:\r?\n|\\r\\n|\\n))*(?:[ \t]*(?:\r?\n|\\n))?[ \t]*[A-Za-z0-9+/=]{40,})",
        gate: Gate::PrivateKey,
    },
    Rule {
        id: "generic-secret-assignment",
        title: "high-entropy string assigned to a secret-like name (secret, api_key, client_secret, token, password, …)",
        pattern: concat!(
            r#"(?P<prefix>[A-Za-z0-9_.-]*"#,
            r"(?i:secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|token|password|passwd|pwd)",
            r#"[A-Za-z0-9_.-]*)["']?\s*(?::\s*&(?:'static\s+)?str\s*)?(?:=>|:=|=|:|\(|,)\s*(?:Some\(\s*)?(?:r#*)?["'`](?P<secret>[^"'`\s]{16,256})["'`]"#
        ),
        gate: Gate::Assignment,
    },
    Rule {
        id: "generic-secret-env",
        title: "high-entropy unquoted value of a secret-like key in .env, YAML or TOML style (API_KEY=…)",
        pattern: concat!(
            r"(?m)^[ \t]*(?:export[ \t]+)?(?P<prefix>[A-Za-z0-9_.-]*",
            r"(?i:secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|token|password|passwd|pwd)",
            r#"[A-Za-z0-9_.-]*)(?:[ \t]*=|:[ \t])[ \t]*(?P<secret>[^\s"'`#<>(){}\[\],;]{16,256})[ \t]*\r?$"#
        ),
        gate: Gate::Assignment,
    },
];

/// Every built-in rule.
pub fn rules() -> &'static [Rule] {
    RULES
}

/// The rules compiled: a set to find which rules hit a file, then one regex per rule for
/// positions.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) set: RegexSet,
    pub(crate) regexes: Vec<Regex>,
}

impl Compiled {
    pub(crate) fn new() -> Result<Self, (&'static str, String)> {
        let set = RegexSet::new(RULES.iter().map(|r| r.pattern))
            .map_err(|e| ("(rule set)", e.to_string()))?;
        let regexes = RULES
            .iter()
            .map(|rule| Regex::new(rule.pattern).map_err(|e| (rule.id, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { set, regexes })
    }
}

/// Substrings of a name that say it describes a secret rather than holds one.
const DESCRIPTIVE_NAMES: &[&str] = &[
    "page",
    "cursor",
    "next",
    "public",
    "publishable",
    "hash",
    "digest",
    "fingerprint",
    "checksum",
    "sha1",
    "sha256",
    "sha512",
    "url",
    "uri",
    "endpoint",
    "path",
    "file",
    "name",
    "type",
    "header",
    "prefix",
    "pattern",
    "regex",
    "env",
    "field",
    "param",
    "kind",
    "len",
    "count",
    "expires",
    "expiry",
    "ttl",
];

/// Fewest characters a generic value needs.
pub(crate) const MIN_GENERIC_LEN: usize = 16;
/// Least Shannon entropy (bits per character) a generic value needs.
pub(crate) const MIN_ENTROPY_BITS: f64 = 3.5;

/// Markers that make a value obviously fake (compared case-insensitively).
pub(crate) const FAKE_MARKERS: &[&str] = &[
    "test", "fake", "example", "dummy", "not_real", "notreal", "xxxx",
];
/// A run of this many identical characters makes a value obviously fake.
pub(crate) const FAKE_RUN: usize = 8;

/// Whether `value` is obviously fake: it contains `test`, `fake`, `example`, `dummy`,
/// `not_real`, `notreal` or `xxxx` (any case), or a run of 8 or more identical characters.
///
/// Connector test fixtures use such values, and the scanner lets them pass (except in private
/// keys, see `docs/specs/secret-scan.md`).
///
/// ```
/// use ivory_certify::secrets::is_obviously_fake;
///
/// assert!(is_obviously_fake("whsec_ivoryFakeTestSecret"));
/// assert!(is_obviously_fake("AKIA00000000ZZZZ"));
/// assert!(!is_obviously_fake("k8Vd2Lm7"));
/// ```
pub fn is_obviously_fake(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    FAKE_MARKERS.iter().any(|m| lower.contains(m)) || has_run(value, FAKE_RUN)
}

fn has_run(value: &str, length: usize) -> bool {
    let mut previous = None;
    let mut run = 0;
    for c in value.chars() {
        if Some(c) == previous {
            run += 1;
        } else {
            previous = Some(c);
            run = 1;
        }
        if run >= length {
            return true;
        }
    }
    false
}

/// Shannon entropy of `value` in bits per character.
pub(crate) fn shannon_entropy(value: &str) -> f64 {
    let mut counts = std::collections::HashMap::<char, usize>::new();
    let mut total = 0usize;
    for c in value.chars() {
        *counts.entry(c).or_default() += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// Whether a generic assignment of `value` to `name` looks like a real secret.
pub(crate) fn generic_is_secret(name: &str, value: &str) -> bool {
    let lower_name = name.to_ascii_lowercase();
    if DESCRIPTIVE_NAMES.iter().any(|d| lower_name.contains(d)) {
        return false;
    }
    looks_random(value)
}

/// The value half of the generic gate: length, shape, entropy and character mix.
fn looks_random(value: &str) -> bool {
    let length = value.chars().count();
    if length < MIN_GENERIC_LEN {
        return false;
    }
    // Templates, interpolations, placeholders, URLs and paths hold no secret.
    if value.contains("://")
        || value.contains(['{', '}', '$', '%', '<', '>', '\\'])
        || value.starts_with(['/', '.', '~'])
    {
        return false;
    }
    if shannon_entropy(value) < MIN_ENTROPY_BITS {
        return false;
    }
    let digit = value.chars().any(|c| c.is_ascii_digit());
    let upper = value.chars().any(|c| c.is_ascii_uppercase());
    let lower = value.chars().any(|c| c.is_ascii_lowercase());
    digit || (upper && lower && length >= 24)
}

/// Keeps `SECRET_NAMES` and the generic patterns in step.
#[cfg(test)]
fn generic_patterns_use_secret_names() -> bool {
    RULES
        .iter()
        .filter(|r| r.gate == Gate::Assignment)
        .all(|r| r.pattern.contains(SECRET_NAMES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles_and_names_its_groups() {
        let compiled = Compiled::new().expect("rules compile");
        for (rule, regex) in RULES.iter().zip(&compiled.regexes) {
            let names: Vec<_> = regex.capture_names().flatten().collect();
            assert!(names.contains(&"secret"), "{}", rule.id);
            assert!(names.contains(&"prefix"), "{}", rule.id);
        }
        assert!(generic_patterns_use_secret_names());
    }

    #[test]
    fn rule_ids_are_unique_slugs() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        for id in ids {
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{id}"
            );
        }
    }

    /// A deterministic random-looking string (so that no literal here looks like a key).
    fn sample(length: usize, alphabet: &str) -> String {
        let alphabet: Vec<char> = alphabet.chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..length)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[((state >> 33) as usize) % alphabet.len()]
            })
            .collect()
    }

    const ALNUM: &str = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789";
    const HEX: &str = "0123456789abcdef";
    const LETTERS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

    #[test]
    fn fake_markers() {
        for fake in [
            "sk_live_TEST1234567890abcdefgh",
            "my-dummy-value-1234",
            "NotReal_0123456789",
            "not_real_0123456789",
            "abcXXXXdef0123456789",
            "Example0123456789",
            "a1b2c3d4zzzzzzzz",
        ] {
            assert!(is_obviously_fake(fake), "{fake}");
        }
        let random = sample(20, ALNUM);
        assert!(!is_obviously_fake(&random), "{random}");
        for real in ["aaaaaaa-bbbbbbb", "x1y2xx3xxx"] {
            assert!(!is_obviously_fake(real), "{real}");
        }
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy(&sample(20, ALNUM)) > 3.8);
    }

    #[test]
    fn generic_gate() {
        let alnum = sample(20, ALNUM);
        let hex = sample(24, HEX);
        let letters = sample(28, LETTERS);
        // (name, value, is a secret)
        let cases = [
            ("client_secret", alnum.clone(), true),
            ("API_KEY", hex, true),
            ("secret", letters, true), // mixed case, long
            ("password", "Hunter2Hunter2Hunter2".to_owned(), false), // low entropy
            ("token", "IVORY_ACCESS_TOKEN".to_owned(), false), // an env var name
            ("token", "short1".to_owned(), false),
            ("token_url", alnum.clone(), false), // describes, does not hold
            ("next_page_token", alnum.clone(), false),
            ("secret", format!("{{{alnum}}}"), false),
            ("secret", format!("${{{alnum}}}"), false),
            ("secret", format!("https://{alnum}.io"), false),
            ("secret", format!("/etc/ivory/{alnum}"), false),
            ("secret", "abcdefghijklmnopqrstuvwxyz".to_owned(), false), // no digit, one case
        ];
        for (name, value, expected) in cases {
            assert_eq!(
                generic_is_secret(name, &value),
                expected,
                "{name} = {value}"
            );
        }
    }
}
