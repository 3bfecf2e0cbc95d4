//! Errors of the paced fetch. Opaque about transport details, explicit about what a caller can
//! act on; URLs are shown without their query string, which may carry secrets.

use std::time::Duration;

/// Why a request through [`crate::Fetcher`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL could not be parsed or joined to the base URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host is not among the manifest's `hosts` (or is loopback without a base-URL override).
    #[error("host {host:?} is not allowed: {reason}")]
    HostNotAllowed {
        /// The refused host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The request could not be built (bad header name or value, unserializable body).
    #[error("could not build the request to {url}: {reason}")]
    Build {
        /// The URL (without query).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No usable response: connection refused, reset, DNS failure… after the allowed retries.
    #[error("{method} {url} failed after {retries} retries: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// The URL (without query).
        url: String,
        /// Retries made.
        retries: u32,
        /// The transport error.
        message: String,
    },
    /// The upstream kept answering 429 until the retries ran out.
    #[error(
        "{method} {url} was rate limited (429) {attempts} times; gave up after {retries} retries"
    )]
    RateLimited {
        /// HTTP method.
        method: String,
        /// The URL (without query).
        url: String,
        /// 429 responses seen for this request.
        attempts: u32,
        /// Retries made.
        retries: u32,
    },
    /// The upstream asked for a wait longer than the retry policy allows.
    #[error(
        "{method} {url} answered {status} with Retry-After {wait:?}, longer than the allowed {max:?}"
    )]
    RetryAfterTooLong {
        /// HTTP method.
        method: String,
        /// The URL (without query).
        url: String,
        /// The status (429 or 503).
        status: u16,
        /// What the upstream asked for.
        wait: Duration,
        /// The policy's maximum.
        max: Duration,
    },
    /// A final non-2xx response (after retries, where retryable).
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// HTTP method.
        method: String,
        /// The URL (without query).
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (at most 2 KiB, for diagnostics).
        body: String,
        /// Retries made.
        retries: u32,
    },
    /// No usable credential: the token source failed (a refresh was refused, say).
    #[error("{url}: no usable credential: {message}")]
    Auth {
        /// The URL (without query).
        url: String,
        /// Why (never contains a token).
        message: String,
        /// True when the tenant must connect again.
        needs_reconsent: bool,
    },
    /// The response body exceeded the size limit.
    #[error("{url}: response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The URL (without query).
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The run was asked to stop (the platform is shutting down): no request was sent. What
    /// the connector committed so far stays; the next run resumes from the committed cursor.
    #[error("{url}: not sent, the sync was asked to stop")]
    Stopped {
        /// The URL (without query).
        url: String,
    },
    /// The response body did not decode into the expected type.
    #[error("{url}: unexpected response at {path}: {message} (body starts: {snippet})")]
    Decode {
        /// The URL (without query).
        url: String,
        /// JSON path of the first problem.
        path: String,
        /// What was wrong.
        message: String,
        /// The start of the body.
        snippet: String,
    },
}

impl FetchError {
    /// The final HTTP status, if the upstream answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } | FetchError::RetryAfterTooLong { status, .. } => {
                Some(*status)
            }
            FetchError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The body snippet of a final non-2xx response.
    pub fn body(&self) -> Option<&str> {
        match self {
            FetchError::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// True when the upstream's rate limit caused the failure.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.status(), Some(429))
    }

    /// True when the run was asked to stop (a shutdown), not a failure of the upstream.
    pub fn is_stopped(&self) -> bool {
        matches!(self, FetchError::Stopped { .. })
    }

    /// True when the tenant must connect their account again.
    pub fn needs_reconsent(&self) -> bool {
        matches!(
            self,
            FetchError::Auth {
                needs_reconsent: true,
                ..
            }
        )
    }

    /// True for a transport failure (no usable response).
    pub fn is_transport(&self) -> bool {
        matches!(self, FetchError::Transport { .. })
    }
}

/// A URL for messages: scheme, host, port and path, the query replaced by `?…`.
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// At most `max` bytes of a body, as lossy UTF-8, cut at a character boundary.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
    let mut text = text.into_owned();
    if body.len() > max {
        text.push('…');
    }
    text
}
