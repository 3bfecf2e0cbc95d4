//! `ivory connect` end to end: the OAuth dance through the real binary (its own callback
//! server) against the testkit's fake authorization server, API keys from stdin, grants
//! obtained elsewhere, and the failures' exit codes. No token ever reaches stdout or stderr.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ivory_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
use url::Url;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn write_manifest(dir: &Path, fake: &OAuthServer) -> std::path::PathBuf {
    let json = serde_json::json!({
        "id": "oauth-example",
        "name": "OAuth example",
        "version": "0.1.0",
        "publisher": "Ivory (tests)",
        "description": "A connector authorized against the fake OAuth server.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": ["127.0.0.1"],
        "connection": {
            "type": "oauth2",
            "authorizationUrl": fake.url("/oauth2/authorize").as_str(),
            "tokenUrl": fake.url("/oauth2/token").as_str(),
            "scopes": ["data.records:read"],
            "sync": {"cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 300}
        }
    });
    let path = dir.join("manifest.json");
    std::fs::write(&path, json.to_string()).expect("write");
    path
}

fn ivory(db: &Path, callback: &str) -> StdCommand {
    let mut command = StdCommand::cargo_bin("ivory").expect("binary");
    command
        .arg("--db")
        .arg(db)
        .env("IVORY_OAUTH_CLIENT_ID", CLIENT_ID)
        .env("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET)
        .env("IVORY_OAUTH_CALLBACK", callback)
        .env_remove("IVORY_MASTER_KEY");
    command
}

/// Runs `ivory connect --manifest …` in the background, plays the tenant's browser on the URL
/// it prints, and returns the process output and what the browser saw on the callback page.
async fn dance(db: &Path, manifest: &Path, callback: &str) -> (Output, String) {
    let installed = ivory(db, callback)
        .args(["install", "--tenant", "acme", "--approve", "--manifest"])
        .arg(manifest)
        .output()
        .expect("install");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let mut child = ivory(db, callback)
        .args([
            "connect",
            "--tenant",
            "acme",
            "--timeout",
            "30",
            "--manifest",
        ])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (url, rest) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the URL");
        (line.trim().to_owned(), reader)
    })
    .await
    .expect("join");
    let url =
        Url::parse(&url).unwrap_or_else(|e| panic!("first line is the URL, got {url:?}: {e}"));

    ivory_sdk::fetch::install_tls_provider();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let consent = browser.get(url.as_str()).send().await.expect("provider");
    let location = consent
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_owned();
    let page = browser
        .get(&location)
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("page");
    let output = tokio::task::spawn_blocking(move || {
        let mut rest = rest;
        let mut remaining = String::new();
        let _ = std::io::Read::read_to_string(&mut rest, &mut remaining);
        let mut output = child.wait_with_output().expect("wait");
        output.stdout = remaining.into_bytes();
        output
    })
    .await
    .expect("join");
    (output, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_dance_through_the_binary() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = format!("http://127.0.0.1:{}/oauth/callback", free_port());
    let fake = OAuthServer::start(&[&callback], Duration::from_secs(3600))
        .await
        .expect("fake");
    let manifest = write_manifest(dir.path(), &fake);

    let (output, page) = dance(&db, &manifest, &callback).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(page.contains("Connected"), "{page}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("connected: tenant acme"), "{stdout}");
    assert_eq!(fake.exchanges(), 1);
    // The vault's key file was created next to the database, private.
    let key_file = dir.path().join("ivory.db.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // No token in anything printed.
    assert!(
        !stdout.contains("access-") && !stderr.contains("access-"),
        "{stdout}{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_consent_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = format!("http://127.0.0.1:{}/oauth/callback", free_port());
    let fake = OAuthServer::start(&[&callback], Duration::from_secs(3600))
        .await
        .expect("fake");
    fake.deny();
    let manifest = write_manifest(dir.path(), &fake);
    let (output, page) = dance(&db, &manifest, &callback).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert!(page.contains("Not connected"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_from_elsewhere_and_usage_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = format!("http://127.0.0.1:{}/oauth/callback", free_port());
    let fake = OAuthServer::start(&[&callback], Duration::from_secs(3600))
        .await
        .expect("fake");
    let manifest = write_manifest(dir.path(), &fake);
    let run = |args: Vec<String>, stdin: Option<&'static str>| {
        let mut command = ivory(&db, &callback);
        command
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::piped());
        let mut child = command.spawn().expect("spawn");
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("wait")
    };
    let m = manifest.to_string_lossy().into_owned();
    let not_installed = run(
        vec![
            "connect".into(),
            "--manifest".into(),
            m.clone(),
            "--tenant".into(),
            "acme".into(),
            "--access-token".into(),
            "tok-fake-elsewhere".into(),
        ],
        None,
    );
    assert_eq!(not_installed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&not_installed.stderr)
            .contains("ivory install oauth-example --tenant acme")
    );
    let installed = run(
        vec![
            "install".into(),
            "--manifest".into(),
            m.clone(),
            "--tenant".into(),
            "acme".into(),
            "--approve".into(),
        ],
        None,
    );
    assert_eq!(
        installed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let ok = run(
        vec![
            "connect".into(),
            "--manifest".into(),
            m.clone(),
            "--tenant".into(),
            "acme".into(),
            "--access-token".into(),
            "tok-fake-elsewhere".into(),
            "--refresh-token".into(),
            "ref-fake-elsewhere".into(),
            "--expires-in".into(),
            "1800".into(),
        ],
        None,
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!String::from_utf8_lossy(&ok.stdout).contains("tok-fake"));

    let wrong_kind = run(
        vec![
            "connect".into(),
            "--manifest".into(),
            m.clone(),
            "--tenant".into(),
            "acme".into(),
            "--api-key-stdin".into(),
        ],
        Some("sk_test_fake_key\n"),
    );
    assert_eq!(wrong_kind.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong_kind.stderr).contains("uses oauth2, not an API key"));

    let unknown = run(
        vec![
            "connect".into(),
            "nope".into(),
            "--tenant".into(),
            "acme".into(),
        ],
        None,
    );
    assert_eq!(unknown.status.code(), Some(2));

    let missing_manifest = run(
        vec![
            "connect".into(),
            "--manifest".into(),
            "/nonexistent/manifest.json".into(),
            "--tenant".into(),
            "a".into(),
        ],
        None,
    );
    assert_eq!(missing_manifest.status.code(), Some(2));

    let no_auth = run(
        vec![
            "connect".into(),
            "example-items".into(),
            "--tenant".into(),
            "acme".into(),
        ],
        None,
    );
    assert_eq!(no_auth.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_auth.stderr).contains("needs no credentials"));
}
