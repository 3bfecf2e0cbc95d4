//! `ivory connect` against a REAL authorization server: panva's `oidc-provider` (an OpenID
//! Certified OAuth 2.0 / OIDC implementation from npm) started from `tests/oidc/provider.mjs`
//! on loopback. The manifest's endpoints come from the provider's discovery document; a
//! "browser" (reqwest, redirects off, a small cookie jar) logs in and consents through the
//! provider's interaction forms. What the provider enforces is checked against it, not a fake:
//! the exact redirect URI, PKCE, rotating refresh tokens; and our side refuses a bad `state`.
//!
//! Needs Node.js >= 18 and the provider's packages: `npm ci --prefix tests/oidc --no-audit
//! --no-fund` at the workspace root. Without them these tests fail (they never skip).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Output, Stdio};
use std::sync::Arc;

use assert_cmd::cargo::CommandCargoExt;
use ivory_runtime::oauth::{OAuthApp, OAuthTokenSource, http::token_client};
use ivory_runtime::store::StoredGrant;
use ivory_runtime::{MasterKeys, Store, Vault};
use ivory_sdk::Clock;
use ivory_sdk::fetch::TokenSource;
use jiff::{SignedDuration, Timestamp};
use url::Url;

#[path = "../../../tests/oidc/harness.rs"]
mod harness;

use harness::{BASIC, Browser, KillOnDrop, Provider, free_port, http_client};

const CONNECTOR: &str = "oidc-example";

fn callback_uri() -> String {
    format!("http://127.0.0.1:{}/oauth/callback", free_port())
}

fn write_manifest(dir: &Path, provider: &Provider) -> PathBuf {
    let json = serde_json::json!({
        "id": CONNECTOR,
        "name": "OIDC example",
        "version": "0.1.0",
        "publisher": "Ivory (tests)",
        "description": "A connector authorized against a real OAuth 2.0 / OIDC provider on loopback.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": ["127.0.0.1"],
        "connection": {
            "type": "oauth2",
            "authorizationUrl": provider.authorization_endpoint.as_str(),
            "tokenUrl": provider.token_endpoint.as_str(),
            "revocationUrl": provider.revocation_endpoint.as_str(),
            "scopes": ["openid", "records:read"],
            "sync": {"cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 300}
        }
    });
    let path = dir.join("manifest.json");
    std::fs::write(&path, json.to_string()).expect("write");
    path
}

/// `ivory --db DB` with the operator's OAuth app (the provider's basic client) in its env.
fn ivory(db: &Path, callback: &str) -> Command {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command
        .arg("--db")
        .arg(db)
        .env("IVORY_OAUTH_CLIENT_ID", BASIC.id)
        .env("IVORY_OAUTH_CLIENT_SECRET", BASIC.secret)
        .env("IVORY_OAUTH_CALLBACK", callback)
        .env_remove("IVORY_OAUTH_CLIENT_AUTH")
        .env_remove("IVORY_MASTER_KEY");
    command
}

/// `ivory install` then `ivory connect --manifest … --tenant acme` running, its consent URL
/// read.
struct Connect {
    process: KillOnDrop,
    url: Url,
    stdout: BufReader<ChildStdout>,
}

impl Connect {
    async fn start(db: &Path, manifest: &Path, callback: &str, timeout: u32) -> Self {
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
        let mut command = ivory(db, callback);
        command
            .args([
                "connect",
                "--tenant",
                "acme",
                "--timeout",
                &timeout.to_string(),
                "--manifest",
            ])
            .arg(manifest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = KillOnDrop(Some(command.spawn().expect("spawn ivory")));
        let stdout = process.child().stdout.take().expect("stdout");
        let (line, stdout) = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).expect("read the URL");
            (line.trim().to_owned(), reader)
        })
        .await
        .expect("join");
        let url = match Url::parse(&line) {
            Ok(url) => url,
            Err(e) => {
                let child = process.0.take().expect("running");
                let output = child.wait_with_output().expect("wait");
                panic!(
                    "the first line is the URL, got {line:?} ({e}); stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        Self {
            process,
            url,
            stdout,
        }
    }

    /// Waits for the exit; `stdout` is what followed the URL line.
    async fn finish(mut self) -> Output {
        let child = self.process.0.take().expect("running");
        let mut stdout = self.stdout;
        tokio::task::spawn_blocking(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            let mut output = child.wait_with_output().expect("wait");
            output.stdout = rest.into_bytes();
            output
        })
        .await
        .expect("join")
    }
}

async fn open_store(db: &Path) -> (Store, Arc<Vault>, String) {
    let keys =
        MasterKeys::load(None, &PathBuf::from(format!("{}.key", db.display()))).expect("key file");
    let store = Store::open(db.to_str().expect("utf-8 path"))
        .await
        .expect("store");
    let installation = store
        .installation("acme", CONNECTOR)
        .await
        .expect("read")
        .expect("installation");
    (store, Arc::new(Vault::new(keys)), installation.id)
}

async fn stored_grant(
    store: &Store,
    vault: &Vault,
    installation: &str,
) -> Option<ivory_runtime::store::OAuth2Grant> {
    match store
        .credentials(installation, vault)
        .await
        .expect("read credentials")
    {
        Some((StoredGrant::OAuth2(grant), _)) => Some(grant),
        Some(_) => panic!("not an OAuth grant"),
        None => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivory_connect_against_a_real_oidc_provider_then_refresh_with_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = callback_uri();
    let provider = Provider::start(&[&callback]).await;
    let manifest = write_manifest(dir.path(), &provider);

    let connect = Connect::start(&db, &manifest, &callback, 30).await;
    let query: HashMap<String, String> = connect.url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], callback);
    let back = Browser::new()
        .authorize(&connect.url, &callback, "approve")
        .await
        .unwrap_or_else(|page| panic!("the provider refused: {page}\n{:?}", provider.log()));
    let page = http_client()
        .get(back.as_str())
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("page");
    let output = connect.finish().await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stderr}\n{:?}",
        provider.log()
    );
    assert!(page.contains("Connected"), "{page}");
    assert!(stdout.contains("connected: tenant acme"), "{stdout}");
    assert!(
        stdout.contains("records:read"),
        "the granted scopes are reported: {stdout}"
    );
    assert!(provider.saw(r#""grant_type":"authorization_code""#).await);

    // The grant is in the vault, with the refresh token the provider issued.
    let (store, vault, installation) = open_store(&db).await;
    let first = stored_grant(&store, &vault, &installation)
        .await
        .expect("a stored grant");
    let first_refresh = first.refresh_token.clone().expect("a refresh token");
    assert!(first.expires_at.is_some());
    assert!(
        !stdout.contains(first.access_token.expose())
            && !stderr.contains(first.access_token.expose())
    );
    assert!(!stderr.contains(first_refresh.expose()));

    // 59 minutes later (the provider's tokens live an hour): a proactive refresh against the
    // real token endpoint, with the operator's app from the same environment as `ivory`.
    let env = HashMap::from([
        ("IVORY_OAUTH_CLIENT_ID", BASIC.id.to_owned()),
        ("IVORY_OAUTH_CLIENT_SECRET", BASIC.secret.to_owned()),
        ("IVORY_OAUTH_CALLBACK", callback.clone()),
    ]);
    let app = OAuthApp::from_env(|k| env.get(k).cloned()).expect("app");
    let later = Timestamp::now()
        .checked_add(SignedDuration::from_mins(59))
        .expect("t");
    let source = OAuthTokenSource::new(
        store.clone(),
        vault.clone(),
        app,
        provider.token_endpoint.clone(),
        &installation,
        Clock::starting_at(later),
        token_client().expect("client"),
    );
    let token = source.token().await.expect("refreshed");
    assert_ne!(token.secret.expose(), first.access_token.expose());
    assert!(provider.saw(r#""grant_type":"refresh_token""#).await);
    let second = stored_grant(&store, &vault, &installation)
        .await
        .expect("grant");
    assert_eq!(
        second.access_token.expose(),
        token.secret.expose(),
        "persisted before use"
    );
    let second_refresh = second.refresh_token.clone().expect("rotated refresh token");
    assert_ne!(
        second_refresh.expose(),
        first_refresh.expose(),
        "the provider rotates"
    );

    // The rotated-out refresh token is refused by the provider…
    let (status, body) = provider
        .token_request(
            BASIC,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", first_refresh.expose()),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        provider.saw("refresh token already used").await,
        "{:?}",
        provider.log()
    );
    // …and, as reuse detection, the provider revoked the whole grant: our next refresh gets
    // invalid_grant and marks the installation for re-consent.
    let error = source
        .unauthorized(&token)
        .await
        .expect_err("the grant is revoked");
    assert!(error.needs_reconsent, "{error}");
    let status = store
        .installation("acme", CONNECTOR)
        .await
        .expect("read")
        .expect("exists")
        .status;
    assert_eq!(status, "needs_reconsent");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_state_in_the_callback_exits_1_and_nothing_is_exchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = callback_uri();
    let provider = Provider::start(&[&callback]).await;
    let manifest = write_manifest(dir.path(), &provider);

    let connect = Connect::start(&db, &manifest, &callback, 30).await;
    let mut back = Browser::new()
        .authorize(&connect.url, &callback, "approve")
        .await
        .expect("the provider approves");
    // A forged callback: the provider's real code, another state.
    let pairs: Vec<(String, String)> = back.query_pairs().into_owned().collect();
    back.query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(k, v)| {
            (
                k.as_str(),
                if k == "state" {
                    "forged-state-0000000000000000000000"
                } else {
                    v.as_str()
                },
            )
        }));
    let page = http_client()
        .get(back.as_str())
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("page");
    let output = connect.finish().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("state"), "{stderr}");
    assert!(page.contains("Not connected"), "{page}");
    // Refused on our side: the code never reached the token endpoint.
    assert!(
        !provider
            .log()
            .iter()
            .any(|l| l.contains(r#""event":"grant."#)),
        "{:?}",
        provider.log()
    );
    let (store, vault, installation) = open_store(&db).await;
    assert!(stored_grant(&store, &vault, &installation).await.is_none());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_the_provider_does_not_know_is_refused_there() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let registered = callback_uri();
    let provider = Provider::start(&[&registered]).await;
    let manifest = write_manifest(dir.path(), &provider);

    // The operator configured another callback than the one registered with the provider.
    let unregistered = callback_uri();
    let connect = Connect::start(&db, &manifest, &unregistered, 1).await;
    let refused = Browser::new()
        .authorize(&connect.url, &unregistered, "approve")
        .await
        .expect_err("no redirect to an unregistered URI");
    assert!(refused.starts_with("400"), "{refused}");
    assert!(refused.contains("invalid_redirect_uri"), "{refused}");
    assert!(provider.saw("redirect_uri did not match").await);
    // No callback ever comes: `connect` gives up after its timeout.
    let output = connect.finish().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no OAuth callback"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_code_is_useless_without_the_pkce_verifier() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = callback_uri();
    let provider = Provider::start(&[&callback]).await;
    let manifest = write_manifest(dir.path(), &provider);

    let connect = Connect::start(&db, &manifest, &callback, 30).await;
    let back = Browser::new()
        .authorize(&connect.url, &callback, "approve")
        .await
        .expect("the provider approves");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    // An attacker with the code and even the client's credentials, but not the verifier.
    let (status, body) = provider
        .token_request(
            BASIC,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        provider.saw("PKCE verification failed").await,
        "{:?}",
        provider.log()
    );
    // The tenant's own `ivory connect` holds the verifier: the same code works for it.
    let page = http_client()
        .get(back.as_str())
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("page");
    let output = connect.finish().await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(page.contains("Connected"), "{page}");
    let (store, vault, installation) = open_store(&db).await;
    let grant = stored_grant(&store, &vault, &installation)
        .await
        .expect("stored");
    assert!(grant.refresh_token.is_some());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_who_declines_at_the_provider_exits_1() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let callback = callback_uri();
    let provider = Provider::start(&[&callback]).await;
    let manifest = write_manifest(dir.path(), &provider);

    let connect = Connect::start(&db, &manifest, &callback, 30).await;
    let back = Browser::new()
        .authorize(&connect.url, &callback, "deny")
        .await
        .expect("redirected back with an error");
    let page = http_client()
        .get(back.as_str())
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("page");
    let output = connect.finish().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert!(page.contains("Not connected"), "{page}");
}
