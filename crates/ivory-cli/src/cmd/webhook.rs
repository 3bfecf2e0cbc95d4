//! `ivory webhook verify`: verify one delivery, statelessly (no replay cache).
//!
//! Exit codes: 0 and `valid` on stdout when the delivery verifies; 1 and `invalid: <reason>`
//! on stderr when it does not; 2 on a usage error (unknown scheme, malformed `--header`,
//! unreadable body file, a secret that does not decode, `--url` missing for HubSpot v3).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use ivory_sdk::webhook::{
    Delivery, HmacSha256Config, Scheme, SignatureEncoding, Verifier, VerifierConfig,
};
use jiff::Timestamp;

/// Arguments of `ivory webhook verify`.
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The signing scheme.
    #[arg(long, value_enum)]
    scheme: SchemeArg,
    /// The secret exactly as the upstream hands it out: Stripe's whole `whsec_…` endpoint
    /// secret, HubSpot's client secret, Airtable's `macSecretBase64`, a Standard Webhooks
    /// `whsec_<base64>`.
    #[arg(long, env = "IVORY_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// A request header as `Name: value`; repeat for each header.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<HeaderArg>,
    /// The raw request body, used byte for byte (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    body_file: PathBuf,
    /// The request method (HubSpot v3 signs it).
    #[arg(long, value_name = "METHOD", default_value = "POST", value_parser = parse_method)]
    method: Method,
    /// The full URL the sender called, scheme and host included (HubSpot v3 signs it).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Verify as of this time, in Unix seconds (default: the system clock).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// Timestamp tolerance in seconds, in the past and in the future.
    #[arg(long, value_name = "SECONDS", default_value_t = VerifierConfig::DEFAULT_TOLERANCE.as_secs())]
    tolerance: u64,
    /// `hmac-sha256` only: the header carrying the signature.
    #[arg(long, value_name = "NAME", value_parser = parse_header_name)]
    signature_header: Option<HeaderName>,
    /// `hmac-sha256` only: how the signature is encoded.
    #[arg(long, value_enum, default_value_t = EncodingArg::Hex)]
    encoding: EncodingArg,
    /// `hmac-sha256` only: a literal prefix before the signature, such as `sha256=`.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

impl fmt::Debug for VerifyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyArgs")
            .field("scheme", &self.scheme)
            .field("secret", &"[redacted]")
            .field("headers", &self.headers)
            .field("body_file", &self.body_file)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("now", &self.now)
            .field("tolerance", &self.tolerance)
            .field("signature_header", &self.signature_header)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SchemeArg {
    Stripe,
    #[value(name = "hubspot-v3")]
    HubspotV3,
    Airtable,
    StandardWebhooks,
    #[value(name = "hmac-sha256")]
    HmacSha256,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EncodingArg {
    Hex,
    Base64,
}

#[derive(Clone, Debug)]
struct HeaderArg {
    name: HeaderName,
    value: HeaderValue,
}

fn parse_header(raw: &str) -> Result<HeaderArg, String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {raw:?}"))?;
    let name = parse_header_name(name.trim())?;
    let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
        .map_err(|_| format!("header `{name}`: the value holds characters a header cannot"))?;
    Ok(HeaderArg { name, value })
}

fn parse_header_name(raw: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(raw.as_bytes())
        .map_err(|_| format!("{raw:?} is not a valid header name"))
}

fn parse_method(raw: &str) -> Result<Method, String> {
    Method::from_bytes(raw.as_bytes()).map_err(|_| format!("{raw:?} is not an HTTP method"))
}

/// A usage error: the reason, printed by [`verify`] with exit code 2.
struct Usage(String);

pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    let (verifier, delivery, now) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(Usage(reason)) => {
            eprintln!("error: {reason}");
            return ExitCode::from(2);
        }
    };
    match verifier.verify_at(&delivery, now) {
        Ok(verified) => {
            tracing::info!(
                scheme = %verified.scheme(),
                event_id = verified.event_id(),
                timestamp = ?verified.timestamp(),
                "Webhook delivery verified."
            );
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(rejection) => {
            eprintln!("invalid: {rejection}");
            ExitCode::from(1)
        }
    }
}

fn prepare(args: &VerifyArgs) -> Result<(Verifier, Delivery, Timestamp), Usage> {
    let plain_flags = args.signature_header.is_some() || args.prefix.is_some();
    let scheme = match args.scheme {
        SchemeArg::Stripe => Scheme::Stripe,
        SchemeArg::HubspotV3 => Scheme::HubSpotV3,
        SchemeArg::Airtable => Scheme::Airtable,
        SchemeArg::StandardWebhooks => Scheme::StandardWebhooks,
        SchemeArg::HmacSha256 => {
            let header = args.signature_header.clone().ok_or_else(|| {
                Usage("--scheme hmac-sha256 needs --signature-header NAME".to_owned())
            })?;
            let encoding = match args.encoding {
                EncodingArg::Hex => SignatureEncoding::Hex,
                EncodingArg::Base64 => SignatureEncoding::Base64,
            };
            let config = HmacSha256Config::new(header, encoding);
            Scheme::HmacSha256(match &args.prefix {
                Some(prefix) => config.with_prefix(prefix.clone()),
                None => config,
            })
        }
    };
    if plain_flags && args.scheme != SchemeArg::HmacSha256 {
        return Err(Usage(
            "--signature-header and --prefix only apply to --scheme hmac-sha256".to_owned(),
        ));
    }
    if args.scheme == SchemeArg::HubspotV3 && args.url.is_none() {
        return Err(Usage(
            "--scheme hubspot-v3 needs --url: HubSpot signs the full URL it called".to_owned(),
        ));
    }

    let config = VerifierConfig::default().with_tolerance(Duration::from_secs(args.tolerance));
    let verifier = Verifier::new(scheme, &args.secret)
        .map_err(|error| Usage(error.to_string()))?
        .with_config(config);

    let body = read_body(&args.body_file)?;
    let mut headers = HeaderMap::new();
    for header in &args.headers {
        headers.append(header.name.clone(), header.value.clone());
    }
    let mut delivery = Delivery::new(headers, body).with_method(args.method.clone());
    if let Some(url) = &args.url {
        delivery = delivery.with_url(url.clone());
    }

    let now = match args.now {
        Some(second) => Timestamp::from_second(second).map_err(|_| {
            Usage(format!(
                "--now {second} is outside the supported time range"
            ))
        })?,
        None => Timestamp::now(),
    };
    Ok((verifier, delivery, now))
}

fn read_body(path: &Path) -> Result<Vec<u8>, Usage> {
    if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|error| Usage(format!("cannot read the body from standard input: {error}")))?;
        return Ok(body);
    }
    std::fs::read(path)
        .map_err(|error| Usage(format!("cannot read body file {}: {error}", path.display())))
}
