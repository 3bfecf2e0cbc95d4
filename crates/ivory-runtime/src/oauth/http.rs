//! The HTTP client of the token endpoint: the `oauth2` crate's requests sent with reqwest 0.13
//! (the crate's own reqwest feature pins 0.12), redirects off (a redirect could carry a code or
//! a refresh token to another host), a bounded timeout.

use std::time::Duration;

/// A transport failure talking to the token endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpClientError(String);

/// The client used for token endpoint calls.
pub fn token_client() -> Result<reqwest::Client, HttpClientError> {
    ivory_sdk::fetch::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .user_agent(concat!("ivory-connector-sdk/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpClientError(format!("HTTP client: {e}")))
}

/// Sends one `oauth2` request.
pub async fn send(
    client: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpClientError> {
    let request = reqwest::Request::try_from(request)
        .map_err(|e| HttpClientError(format!("bad token request: {e}")))?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| HttpClientError(e.without_url().to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpClientError(e.without_url().to_string()))?;
    let mut built = http::Response::builder().status(status);
    if let Some(map) = built.headers_mut() {
        *map = headers;
    }
    built
        .body(body.to_vec())
        .map_err(|e| HttpClientError(format!("bad token response: {e}")))
}
