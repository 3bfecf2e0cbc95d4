//! The Rust side of the OIDC test provider, shared by the tests of two crates
//! (`crates/ivory-cli/tests/oidc_cli.rs`, `crates/ivory-runtime/tests/it/oidc.rs`, each with
//! `#[path = …] mod harness;`): starts `node tests/oidc/provider.mjs` on a free port and reads
//! its discovery document, keeps its event log, sends raw token requests, and plays the
//! tenant's browser through login and consent.
//!
//! The provider's packages must be installed (`npm ci --prefix tests/oidc --no-audit
//! --no-fund` at the workspace root, with Node.js >= 18): without them the tests FAIL, saying
//! so; they never skip.

// Each including crate uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

/// How CI and developers install the provider.
pub(crate) const INSTALL: &str = "npm ci --prefix tests/oidc --no-audit --no-fund";

/// A client registered at the provider (`tests/oidc/provider.mjs`; obviously fake secrets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OidcClient {
    pub(crate) id: &'static str,
    pub(crate) secret: &'static str,
    /// `client_secret_basic` (true) or `client_secret_post` (false).
    pub(crate) basic: bool,
}

/// The provider's `client_secret_basic` client.
pub(crate) const BASIC: OidcClient = OidcClient {
    id: "ivory-test-basic",
    secret: "fake-secret-basic-not-real",
    basic: true,
};

/// The provider's `client_secret_post` client.
pub(crate) const POST: OidcClient = OidcClient {
    id: "ivory-test-post",
    secret: "fake-secret-post-not-real",
    basic: false,
};

/// Kills and reaps a child process when dropped (a failed assertion included).
pub(crate) struct KillOnDrop(pub(crate) Option<Child>);

impl KillOnDrop {
    pub(crate) fn child(&mut self) -> &mut Child {
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
pub(crate) struct Provider {
    _process: KillOnDrop,
    pub(crate) issuer: Url,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) revocation_endpoint: Url,
    /// Its event lines (`{"event":"grant.error","detail":…}`) and its stderr.
    log: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    /// Starts the provider with these exactly-matched redirect URIs for both clients.
    pub(crate) async fn start(redirect_uris: &[&str]) -> Self {
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
        let discovery: serde_json::Value = http_client()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("discovery JSON");
        let endpoint = |name: &str| Url::parse(discovery[name].as_str().expect(name)).expect(name);
        Provider {
            issuer: Url::parse(issuer).expect("issuer"),
            authorization_endpoint: endpoint("authorization_endpoint"),
            token_endpoint: endpoint("token_endpoint"),
            revocation_endpoint: endpoint("revocation_endpoint"),
            _process: process,
            log,
        }
    }

    /// Everything the provider logged so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Waits (briefly) for a provider log line containing `needle`.
    pub(crate) async fn saw(&self, needle: &str) -> bool {
        for _ in 0..100 {
            if self.log().iter().any(|l| l.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// How many provider log lines contain `needle` (after a short settle).
    pub(crate) async fn count(&self, needle: &str) -> usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// A raw token request (`form`) as `client`, the way it authenticates.
    pub(crate) async fn token_request(
        &self,
        client: OidcClient,
        form: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let request = http_client().post(self.token_endpoint.as_str());
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let request = if client.basic {
            request.basic_auth(client.id, Some(client.secret))
        } else {
            form.extend([("client_id", client.id), ("client_secret", client.secret)]);
            request
        };
        let response = request.form(&form).send().await.expect("token endpoint");
        let status = response.status().as_u16();
        (status, response.json().await.expect("token endpoint JSON"))
    }
}

/// An HTTP client with redirects off.
pub(crate) fn http_client() -> reqwest::Client {
    ivory_sdk::fetch::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The tenant's browser: no automatic redirects, cookies kept by name (one host: the
/// provider), logs in and answers consent through the provider's interaction forms.
pub(crate) struct Browser {
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new() -> Self {
        Self {
            client: http_client(),
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
    pub(crate) async fn authorize(
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

/// A port free right now on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}
