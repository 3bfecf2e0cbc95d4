//! `ivory connect` against a REAL authorization server: panva's `oidc-provider` (an OpenID
//! Certified OAuth 2.0 / OIDC implementation from npm) started from `tests/oidc/provider.mjs`
//! on loopback. The manifest's endpoints come from the provider's discovery document; a
//! "browser" (reqwest, redirects off, a small cookie jar) logs in and consents through the
//! provider's interaction forms. What the provider enforces is checked against it, not a fake:
//! the exact redirect URI, PKCE, rotating refresh tokens; and our side refuses a bad `state`.
//!
//! Needs Node.js >= 18 and the provider's packages: `npm ci --prefix tests/oidc --no-audit
//! --no-fund` at the workspace root. Without them these tests fail (they never skip).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use ivory_runtime::oauth::{OAuthApp, OAuthTokenSource, http::token_client};
use ivory_runtime::store::StoredGrant;
use ivory_runtime::{MasterKeys, Store, Vault};
use ivory_sdk::Clock;
use ivory_sdk::fetch::TokenSource;
use jiff::{SignedDuration, Timestamp};
use url::Url;

/// The provider's `client_secret_basic` client (see `tests/oidc/provider.mjs`).
const CLIENT_ID: &str = "ivory-test-basic";
const CLIENT_SECRET: &str = "fake-secret-basic-not-real";
const INSTALL: &str = "npm ci --prefix tests/oidc --no-audit --no-fund";
const CONNECTOR: &str = "oidc-example";

/// Kills and reaps a child process when dropped (a failed assertion included).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `node tests/oidc/provider.mjs` on a free port, with what its discovery document says.
struct Provider {
    _process: KillOnDrop,
    authorization_endpoint: Url,
    token_endpoint: Url,
    revocation_endpoint: Url,
    /// Its event lines (`{"event":"grant.error","detail":…}`) and its stderr.
    log: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    async fn start(redirect_uris: &[&str]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "the OIDC test provider is not installed: run `{INSTALL}` at the workspace root \
             (Node.js >= 18 and npm needed)"
        );
        let mut command = Command::new("node");
        command.arg(dir.join("provider.mjs")).current_dir(&dir);
        for uri in redirect_uris {
            command.arg("--redirect-uri").arg(uri);
        }
        let mut process = KillOnDrop(Some(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run `node` ({e}): install Node.js >= 18, then `{INSTALL}`")
                }),
        ));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready, readiness) = std::sync::mpsc::channel::<String>();
        let stdout = process.child().stdout.take().expect("stdout");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("{\"ready\":true") {
                    let _ = ready.send(line);
                } else {
                    lines.lock().expect("log").push(line);
                }
            }
        });
        let stderr = process.child().stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("log").push(format!("stderr: {line}"));
            }
        });
        let line =
            tokio::task::spawn_blocking(move || readiness.recv_timeout(Duration::from_secs(10)))
                .await
                .expect("join")
                .unwrap_or_else(|_| {
                    panic!(
                        "the OIDC provider did not start: {:?}",
                        log.lock().expect("log")
                    )
                });
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
        let issuer = ready["issuer"].as_str().expect("issuer");
        let discovery: serde_json::Value = client()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("discovery JSON");
        let endpoint = |name: &str| Url::parse(discovery[name].as_str().expect(name)).expect(name);
        Provider {
            authorization_endpoint: endpoint("authorization_endpoint"),
            token_endpoint: endpoint("token_endpoint"),
            revocation_endpoint: endpoint("revocation_endpoint"),
            _process: process,
            log,
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Waits (briefly) for a provider log line containing `needle`.
    async fn saw(&self, needle: &str) -> bool {
        for _ in 0..100 {
            if self.log().iter().any(|l| l.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A raw token request as the `client_secret_basic` client.
    async fn token_request(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let response = client()
            .post(self.token_endpoint.as_str())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(form)
            .send()
            .await
            .expect("token endpoint");
        let status = response.status().as_u16();
        (status, response.json().await.expect("token endpoint JSON"))
    }
}

fn client() -> reqwest::Client {
    ivory_sdk::fetch::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The tenant's browser: no automatic redirects, cookies kept by name (one host: the
/// provider), logs in and answers consent through the provider's interaction forms.
struct Browser {
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            client: client(),
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie)
        };
        let response = request.send().await.expect("provider reachable");
        for set in response.headers().get_all("set-cookie") {
            let pair = set
                .to_str()
                .expect("cookie")
                .split(';')
                .next()
                .unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        response
    }

    /// Follows the consent URL through login and consent (`decision`: approve | deny) up to
    /// the redirect to `callback`, which it returns without following. `Err` carries the
    /// provider's page when it stops the tenant instead of redirecting.
    async fn authorize(
        &mut self,
        start: &Url,
        callback: &str,
        decision: &str,
    ) -> Result<Url, String> {
        let mut here = start.clone();
        let mut response = self.send(self.client.get(here.as_str())).await;
        for _ in 0..10 {
            if !response.status().is_redirection() {
                let status = response.status();
                return Err(format!(
                    "{status}: {}",
                    response.text().await.unwrap_or_default()
                ));
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("location");
            let next = here.join(location).expect("redirect URL");
            if next.as_str().starts_with(callback) {
                return Ok(next);
            }
            response = if next.path().starts_with("/interaction/") {
                let page = self.send(self.client.get(next.as_str())).await;
                assert!(
                    page.status().is_success(),
                    "interaction page: {}",
                    page.status()
                );
                assert!(page.text().await.expect("page").contains("<form"));
                let form = [("decision", decision), ("login", "tenant-user")];
                self.send(self.client.post(next.as_str()).form(&form)).await
            } else {
                self.send(self.client.get(next.as_str())).await
            };
            here = next;
        }
        Err("too many redirects".into())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

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

/// `ivory connect --manifest … --tenant acme` running, its consent URL read.
struct Connect {
    process: KillOnDrop,
    url: Url,
    stdout: BufReader<ChildStdout>,
}

impl Connect {
    async fn start(db: &Path, manifest: &Path, callback: &str, timeout: u32) -> Self {
        let mut command = Command::cargo_bin("ivory").expect("binary");
        command
            .arg("--db")
            .arg(db)
            .args([
                "connect",
                "--tenant",
                "acme",
                "--timeout",
                &timeout.to_string(),
                "--manifest",
            ])
            .arg(manifest)
            .env("IVORY_OAUTH_CLIENT_ID", CLIENT_ID)
            .env("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET)
            .env("IVORY_OAUTH_CALLBACK", callback)
            .env_remove("IVORY_OAUTH_CLIENT_AUTH")
            .env_remove("IVORY_MASTER_KEY")
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
        let url = Url::parse(&line)
            .unwrap_or_else(|e| panic!("the first line is the URL, got {line:?}: {e}"));
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
    let page = client()
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
        ("IVORY_OAUTH_CLIENT_ID", CLIENT_ID.to_owned()),
        ("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
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
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", first_refresh.expose()),
        ])
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
    let page = client()
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
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
        ])
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
    let page = client()
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
    let page = client()
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
