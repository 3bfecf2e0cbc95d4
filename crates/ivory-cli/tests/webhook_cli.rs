//! `ivory webhook verify`: exit 0 and `valid` on stdout; 1 and the reason on stderr; 2 on usage
//! errors (unknown scheme, unreadable body file, malformed `--header`, missing `--url` for
//! HubSpot v3, a secret that does not decode).

use std::io::Write;
use std::path::Path;

use assert_cmd::Command;
use http::{HeaderMap, Method};
use ivory_sdk::webhook::{Delivery, Scheme, Verifier};
use jiff::Timestamp;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::NamedTempFile;

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_test_ivory_fake_secret_0000";
const SW_SECRET: &str = "whsec_ivoryFakeTestSecret0000000000000";
const HUBSPOT_SECRET: &str = "ivory-fake-hubspot-client-secret-0000";
const AIRTABLE_SECRET: &str = "ivoryFakeAirtableMacSecret000000";
const HUBSPOT_URL: &str = "https://hooks.ivory.test/webhooks/hubspot%3Ainst?tenant=a%20b";

fn ivory() -> Command {
    let mut command = Command::cargo_bin("ivory").expect("the ivory binary");
    command
        .env_remove("IVORY_LOG")
        .env_remove("IVORY_WEBHOOK_SECRET");
    command
}

fn body_file(bytes: &[u8]) -> NamedTempFile {
    let mut file = NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write body");
    file
}

/// A delivery signed by the SDK's test generator, as `--header` arguments.
fn signed_headers(
    scheme: Scheme,
    secret: &str,
    body: &[u8],
    at: i64,
    method: Method,
) -> Vec<String> {
    let verifier = Verifier::new(scheme, secret).expect("secret");
    let delivery = Delivery::new(HeaderMap::new(), body.to_vec())
        .with_method(method)
        .with_url(HUBSPOT_URL);
    let signed = verifier
        .sign(delivery, Timestamp::from_second(at).expect("time"))
        .expect("signs");
    signed
        .headers()
        .iter()
        .map(|(name, value)| format!("{}: {}", name, value.to_str().expect("ascii")))
        .collect()
}

fn verify(scheme: &str, secret: &str, headers: &[String], body: &Path) -> Command {
    let mut command = verify_without_now(scheme, secret, headers, body);
    command.args(["--now", &NOW.to_string()]);
    command
}

fn verify_without_now(scheme: &str, secret: &str, headers: &[String], body: &Path) -> Command {
    let mut command = ivory();
    command.args(["webhook", "verify", "--scheme", scheme, "--secret", secret]);
    for header in headers {
        command.args(["--header", header]);
    }
    command.arg("--body-file").arg(body);
    command
}

const STRIPE_BODY: &[u8] =
    br#"{"id":"evt_test_ivory_cli","object":"event","type":"invoice.payment_failed"}"#;

fn stripe_headers(at: i64) -> Vec<String> {
    signed_headers(Scheme::Stripe, STRIPE_SECRET, STRIPE_BODY, at, Method::POST)
}

#[test]
fn official_library_fixtures_through_the_cli() {
    // Signed by the upstreams' own libraries (see scripts/gen_webhook_fixtures.py).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ivory-sdk/tests/fixtures/webhooks/official_cases.json");
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let cases = document["cases"].as_array().expect("cases");
    for case in cases {
        let scheme = case["scheme"].as_str().expect("scheme");
        let headers: Vec<String> = case["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|pair| {
                format!(
                    "{}: {}",
                    pair[0].as_str().expect("name"),
                    pair[1].as_str().expect("value")
                )
            })
            .collect();
        let body = body_file(case["body"].as_str().expect("body").as_bytes());
        let mut command = verify_without_now(
            scheme,
            case["secret"].as_str().expect("secret"),
            &headers,
            body.path(),
        );
        command.args(["--now", &case["now"].as_i64().expect("now").to_string()]);
        command.args(["--method", case["method"].as_str().expect("method")]);
        if let Some(url) = case["url"].as_str() {
            command.args(["--url", url]);
        }
        let name = case["name"].as_str().expect("name");
        if case["expect"] == "valid" {
            command.assert().code(0).stdout("valid\n");
        } else {
            command
                .assert()
                .code(1)
                .stdout("")
                .stderr(predicate::str::starts_with("invalid: "));
        }
        eprintln!("{name}: ok");
    }
}

#[test]
fn every_scheme_valid_exits_0() {
    let body = br#"{"id":"evt_1","note":"caf\xc3\xa9"}"#;
    let file = body_file(body);
    for (scheme, name, secret) in [
        (Scheme::Stripe, "stripe", STRIPE_SECRET),
        (Scheme::HubSpotV3, "hubspot-v3", HUBSPOT_SECRET),
        (Scheme::Airtable, "airtable", AIRTABLE_SECRET),
        (Scheme::StandardWebhooks, "standard-webhooks", SW_SECRET),
    ] {
        let headers = signed_headers(scheme, secret, body, NOW - 5, Method::POST);
        verify(name, secret, &headers, file.path())
            .args(["--method", "POST", "--url", HUBSPOT_URL])
            .assert()
            .code(0)
            .stdout("valid\n")
            .stderr("");
    }
}

#[test]
fn hubspot_signs_the_method_and_url() {
    let body = br#"[{"eventId":1}]"#;
    let file = body_file(body);
    let headers = signed_headers(Scheme::HubSpotV3, HUBSPOT_SECRET, body, NOW, Method::PUT);
    let run = |method: &str, url: &str| {
        verify("hubspot-v3", HUBSPOT_SECRET, &headers, file.path())
            .args(["--method", method, "--url", url])
            .assert()
    };
    run("PUT", HUBSPOT_URL).code(0).stdout("valid\n");
    // The URL as HubSpot may send it, with `:` encoded; and the decoded form.
    run(
        "PUT",
        "https://hooks.ivory.test/webhooks/hubspot:inst?tenant=a%20b",
    )
    .code(0);
    run("POST", HUBSPOT_URL)
        .code(1)
        .stderr(predicate::str::contains("no signature matched"));
    run(
        "PUT",
        "https://hooks.ivory.test/webhooks/hubspot%3Ainst?tenant=a b",
    )
    .code(1);
}

#[test]
fn tampered_body_exits_1_with_the_reason_on_stderr() {
    let file = body_file(&STRIPE_BODY.to_ascii_uppercase());
    verify("stripe", STRIPE_SECRET, &stripe_headers(NOW), file.path())
        .assert()
        .code(1)
        .stdout("")
        .stderr("invalid: no signature matched: tampered delivery or wrong secret\n");
}

#[test]
fn wrong_secret_exits_1_and_never_prints_a_secret() {
    let file = body_file(STRIPE_BODY);
    let wrong = "whsec_test_ivory_fake_secret_9999";
    verify("stripe", wrong, &stripe_headers(NOW), file.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no signature matched"))
        .stderr(predicate::str::contains(wrong).not())
        .stderr(predicate::str::contains(STRIPE_SECRET).not());
}

#[test]
fn stale_and_future_exit_1_unless_the_tolerance_allows_them() {
    let file = body_file(STRIPE_BODY);
    verify(
        "stripe",
        STRIPE_SECRET,
        &stripe_headers(NOW - 301),
        file.path(),
    )
    .assert()
    .code(1)
    .stderr("invalid: timestamp is 301 s old, beyond the 300 s tolerance\n");
    verify(
        "stripe",
        STRIPE_SECRET,
        &stripe_headers(NOW + 301),
        file.path(),
    )
    .assert()
    .code(1)
    .stderr("invalid: timestamp is 301 s in the future, beyond the 300 s tolerance\n");
    for at in [NOW - 301, NOW + 301] {
        verify("stripe", STRIPE_SECRET, &stripe_headers(at), file.path())
            .args(["--tolerance", "400"])
            .assert()
            .code(0)
            .stdout("valid\n");
    }
}

#[test]
fn missing_and_malformed_headers_exit_1() {
    let file = body_file(STRIPE_BODY);
    verify("stripe", STRIPE_SECRET, &[], file.path())
        .assert()
        .code(1)
        .stderr("invalid: missing header `stripe-signature`\n");
    verify(
        "stripe",
        STRIPE_SECRET,
        &["Stripe-Signature: v1=abc".to_owned()],
        file.path(),
    )
    .assert()
    .code(1)
    .stderr("invalid: malformed header `stripe-signature`: no `t=` timestamp\n");
    let v0_only = stripe_headers(NOW)[0].replace("v1=", "v0=");
    verify("stripe", STRIPE_SECRET, &[v0_only], file.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no `v1` signature"));
}

#[test]
fn header_names_are_case_insensitive() {
    let file = body_file(STRIPE_BODY);
    let shouted: Vec<String> = stripe_headers(NOW)
        .into_iter()
        .map(|h| h.replacen("stripe-signature", "STRIPE-SIGNATURE", 1))
        .collect();
    verify("stripe", STRIPE_SECRET, &shouted, file.path())
        .assert()
        .code(0);
}

#[test]
fn the_body_is_used_byte_for_byte() {
    // CRLF, a trailing newline and bytes that are not UTF-8: nothing is normalized.
    let body = b"{\"id\":\"evt_bytes\"}\r\n\xff\xfe\n";
    let file = body_file(body);
    let headers = signed_headers(Scheme::Airtable, AIRTABLE_SECRET, body, NOW, Method::POST);
    verify("airtable", AIRTABLE_SECRET, &headers, file.path())
        .assert()
        .code(0);
    let trimmed = body_file(&body[..body.len() - 1]);
    verify("airtable", AIRTABLE_SECRET, &headers, trimmed.path())
        .assert()
        .code(1);
}

#[test]
fn body_from_stdin_and_secret_from_the_environment() {
    let headers = stripe_headers(NOW);
    ivory()
        .env("IVORY_WEBHOOK_SECRET", STRIPE_SECRET)
        .args([
            "webhook",
            "verify",
            "--scheme",
            "stripe",
            "--header",
            &headers[0],
        ])
        .args(["--body-file", "-", "--now", &NOW.to_string()])
        .write_stdin(STRIPE_BODY)
        .assert()
        .code(0)
        .stdout("valid\n");
}

#[test]
fn plain_hmac_sha256_with_flags() {
    // GitHub's published example (docs "Validating webhook deliveries").
    let file = body_file(b"Hello, World!");
    ivory()
        .args(["webhook", "verify", "--scheme", "hmac-sha256", "--secret", "It's a Secret to Everybody"])
        .args(["--signature-header", "X-Hub-Signature-256", "--prefix", "sha256="])
        .args([
            "--header",
            "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ])
        .arg("--body-file")
        .arg(file.path())
        .assert()
        .code(0)
        .stdout("valid\n");
    ivory()
        .args([
            "webhook",
            "verify",
            "--scheme",
            "hmac-sha256",
            "--secret",
            "x",
        ])
        .arg("--body-file")
        .arg(file.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs --signature-header"));
}

#[test]
fn usage_errors_exit_2() {
    let file = body_file(STRIPE_BODY);
    let headers = stripe_headers(NOW);
    // Unknown scheme.
    verify("github", STRIPE_SECRET, &headers, file.path())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("github"));
    // Unreadable body file.
    verify(
        "stripe",
        STRIPE_SECRET,
        &headers,
        Path::new("/nonexistent/ivory/body.json"),
    )
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "cannot read body file /nonexistent/ivory/body.json",
    ));
    // Malformed --header (no colon, bad name, bad value).
    for bad in [
        "Stripe-Signature t=1",
        "Bad Name: x",
        ": x",
        "X-Test: a\u{7f}b",
    ] {
        verify("stripe", STRIPE_SECRET, &[bad.to_owned()], file.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--header"));
    }
    // HubSpot v3 without --url.
    verify("hubspot-v3", HUBSPOT_SECRET, &headers, file.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs --url"));
    // A secret that does not decode.
    verify("airtable", "not base64!", &headers, file.path())
        .assert()
        .code(2)
        .stderr("error: the airtable webhook secret is not valid base64\n");
    // Plain-scheme flags on another scheme.
    verify("stripe", STRIPE_SECRET, &headers, file.path())
        .args(["--prefix", "sha256="])
        .assert()
        .code(2);
    // Not a number.
    verify("stripe", STRIPE_SECRET, &headers, file.path())
        .args(["--tolerance", "five"])
        .assert()
        .code(2);
    // Missing required flags.
    ivory()
        .args(["webhook", "verify", "--scheme", "stripe"])
        .assert()
        .code(2);
}
