//! Which signing scheme a verifier speaks: [`Scheme`] (with the plain scheme's configuration)
//! and its fieldless name [`SchemeKind`].

use std::fmt;
use std::str::FromStr;

use http::HeaderName;

/// A signing scheme, with the configuration the plain `hmac-sha256` scheme needs.
///
/// ```
/// use ivory_sdk::webhook::{HmacSha256Config, Scheme, SignatureEncoding};
/// use http::HeaderName;
///
/// let stripe: Scheme = "stripe".parse()?;
/// assert_eq!(stripe, Scheme::Stripe);
///
/// // A GitHub-style header: `X-Hub-Signature-256: sha256=<hex>`.
/// let plain = Scheme::HmacSha256(
///     HmacSha256Config::new(HeaderName::from_static("x-hub-signature-256"), SignatureEncoding::Hex)
///         .with_prefix("sha256="),
/// );
/// assert_eq!(plain.kind().as_str(), "hmac-sha256");
/// # Ok::<(), ivory_sdk::webhook::UnknownScheme>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over
    /// `"{t}.{body}"`, keyed with the whole `whsec_…` secret as UTF-8.
    Stripe,
    /// HubSpot v3: `X-HubSpot-Signature-v3: <base64>` and `X-HubSpot-Request-Timestamp: <unix
    /// ms>`, HMAC-SHA256 over `method + decoded URI + body + timestamp`, keyed with the app's
    /// client secret.
    HubSpotV3,
    /// Airtable: `X-Airtable-Content-MAC: hmac-sha256=<hex>`, HMAC-SHA256 over the body, keyed
    /// with the base64-decoded `macSecretBase64`. No timestamp.
    Airtable,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` (unix s) and `webhook-signature:
    /// v1,<base64>[ v1,<base64>…]`, HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, keyed with the
    /// base64-decoded `whsec_<base64>` secret.
    StandardWebhooks,
    /// A plain HMAC-SHA256 of the body in one configurable header, keyed with the secret's
    /// UTF-8 bytes. No timestamp.
    HmacSha256(HmacSha256Config),
}

impl Scheme {
    /// The verification scheme for a manifest's declared `webhooks.scheme`; `None` for
    /// `hmac-sha256`, which needs a configuration (header, encoding) the manifest cannot give.
    pub fn from_manifest(scheme: crate::manifest::WebhookScheme) -> Option<Self> {
        use crate::manifest::WebhookScheme;
        Some(match scheme {
            WebhookScheme::Stripe => Self::Stripe,
            WebhookScheme::HubspotV3 => Self::HubSpotV3,
            WebhookScheme::Airtable => Self::Airtable,
            WebhookScheme::StandardWebhooks => Self::StandardWebhooks,
            WebhookScheme::HmacSha256 => return None,
        })
    }

    /// The fieldless name of this scheme.
    pub fn kind(&self) -> SchemeKind {
        match self {
            Self::Stripe => SchemeKind::Stripe,
            Self::HubSpotV3 => SchemeKind::HubSpotV3,
            Self::Airtable => SchemeKind::Airtable,
            Self::StandardWebhooks => SchemeKind::StandardWebhooks,
            Self::HmacSha256(_) => SchemeKind::HmacSha256,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().as_str())
    }
}

/// Parses `stripe`, `hubspot-v3`, `airtable` and `standard-webhooks` (the manifest's
/// `webhooks.scheme` values). `hmac-sha256` needs a configuration, so it is refused here: build
/// [`Scheme::HmacSha256`] directly.
impl FromStr for Scheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<SchemeKind>()? {
            SchemeKind::Stripe => Ok(Self::Stripe),
            SchemeKind::HubSpotV3 => Ok(Self::HubSpotV3),
            SchemeKind::Airtable => Ok(Self::Airtable),
            SchemeKind::StandardWebhooks => Ok(Self::StandardWebhooks),
            SchemeKind::HmacSha256 => Err(UnknownScheme {
                name: s.to_owned(),
                needs_config: true,
            }),
        }
    }
}

/// The name of a scheme, without configuration: what a [`Verified`](super::Verified) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemeKind {
    /// `stripe`
    Stripe,
    /// `hubspot-v3`
    HubSpotV3,
    /// `airtable`
    Airtable,
    /// `standard-webhooks`
    StandardWebhooks,
    /// `hmac-sha256`
    HmacSha256,
}

impl SchemeKind {
    /// Every scheme, in documentation order.
    pub const ALL: [SchemeKind; 5] = [
        Self::Stripe,
        Self::HubSpotV3,
        Self::Airtable,
        Self::StandardWebhooks,
        Self::HmacSha256,
    ];

    /// The scheme's name as written in manifests and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::HubSpotV3 => "hubspot-v3",
            Self::Airtable => "airtable",
            Self::StandardWebhooks => "standard-webhooks",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

impl fmt::Display for SchemeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemeKind {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownScheme {
                name: s.to_owned(),
                needs_config: false,
            })
    }
}

/// A scheme name that is not one of ours (or `hmac-sha256` where a configuration is needed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct UnknownScheme {
    name: String,
    needs_config: bool,
}

impl UnknownScheme {
    fn message(&self) -> String {
        if self.needs_config {
            format!(
                "scheme `{}` needs a header name and an encoding: build Scheme::HmacSha256",
                self.name
            )
        } else {
            format!(
                "unknown webhook scheme `{}` (expected stripe, hubspot-v3, airtable, \
                 standard-webhooks or hmac-sha256)",
                self.name
            )
        }
    }
}

/// How the plain `hmac-sha256` scheme writes its tag in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// Hexadecimal, either case (64 digits).
    Hex,
    /// Standard base64 (RFC 4648 §4), padding optional.
    Base64,
}

impl SignatureEncoding {
    /// `hex` or `base64`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }
}

impl fmt::Display for SignatureEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration of the plain `hmac-sha256` scheme: which header carries the tag, how it is
/// encoded, and an optional literal prefix such as `sha256=`.
///
/// ```
/// use ivory_sdk::webhook::{HmacSha256Config, SignatureEncoding};
/// use http::HeaderName;
///
/// let config = HmacSha256Config::new(HeaderName::from_static("x-signature"), SignatureEncoding::Base64);
/// assert_eq!(config.prefix(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacSha256Config {
    header: HeaderName,
    encoding: SignatureEncoding,
    prefix: Option<String>,
}

impl HmacSha256Config {
    /// A header carrying the bare encoded tag.
    pub fn new(header: HeaderName, encoding: SignatureEncoding) -> Self {
        Self {
            header,
            encoding,
            prefix: None,
        }
    }

    /// Expect (and strip) a literal, case-sensitive prefix before the encoded tag, such as
    /// `sha256=`. An empty prefix means none.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// The header carrying the tag.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The tag's encoding.
    pub fn encoding(&self) -> SignatureEncoding {
        self.encoding
    }

    /// The literal prefix before the tag, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }
}
