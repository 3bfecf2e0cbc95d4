//! One inbound webhook request, as received: [`Delivery`].

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// One inbound webhook request: method, full URL (HubSpot v3 signs it), headers and the raw
/// body bytes, exactly as received. Verify the raw bytes *before* deserializing them.
///
/// Header lookup is case-insensitive ([`HeaderMap`] normalizes names).
///
/// ```
/// use ivory_sdk::webhook::Delivery;
/// use http::{HeaderMap, Method};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("X-HubSpot-Request-Timestamp", "1700000000000".parse()?);
/// let delivery = Delivery::new(headers, &b"[]"[..])
///     .with_method(Method::POST)
///     .with_url("https://hooks.example.com/hubspot?installation=7");
/// assert!(delivery.header("x-hubspot-request-timestamp").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Delivery {
    method: Method,
    url: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    /// A `POST` delivery without a URL.
    pub fn new(headers: HeaderMap, body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            url: None,
            headers,
            body: body.into(),
        }
    }

    /// From the parts of an `http` request. The URL is taken from the request target only when
    /// it is absolute (`https://host/path?query`); behind a server it is usually just the path,
    /// so set the URL the sender called with [`with_url`](Self::with_url) for HubSpot v3.
    pub fn from_parts(parts: &http::request::Parts, body: impl Into<Bytes>) -> Self {
        let url = parts.uri.scheme().is_some().then(|| parts.uri.to_string());
        Self {
            method: parts.method.clone(),
            url,
            headers: parts.headers.clone(),
            body: body.into(),
        }
    }

    /// Sets the HTTP method (default `POST`).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the full URL the sender called, scheme and host included, as the sender saw it
    /// (mind proxies that rewrite the host or the scheme).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Adds or replaces a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The full URL, when one was set.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of a header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.get(name)
    }

    /// The raw body bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}
