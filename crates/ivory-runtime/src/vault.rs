//! The credentials vault: tenant secrets (OAuth grants, API keys) encrypted at rest with
//! XChaCha20-Poly1305 under a platform master key.
//!
//! # Master keys
//!
//! [`MasterKeys`] come from one of two places, chosen by [`MasterKeys::load`]:
//!
//! - the `IVORY_MASTER_KEY` environment variable ([`MASTER_KEY_ENV`]): a comma-separated list
//!   of keys, each the base64 of 32 random bytes, optionally prefixed by an id:
//!   `IVORY_MASTER_KEY="k2:BASE64,k1:BASE64"`. The **first** key seals every new value; every
//!   listed key can open. Rotating is: generate a key, put it first, keep the old ones after
//!   it for as long as values sealed under them remain.
//! - else a key file (the CLI uses `<database>.key`), created on first use with mode `0600`
//!   and holding the same syntax (a freshly created file holds one unnamed key). An existing
//!   key file that group or others can access is refused, never silently used.
//!
//! A key given without an id is named by its fingerprint, `fp-` followed by 16 hex digits of
//! SHA-256 over a fixed label and the key. A sealed value names the key that sealed it by the
//! key's id; opening finds the key by id, else by fingerprint, so a key that was unnamed (the
//! key file's) can later be listed under a name in `IVORY_MASTER_KEY` and still open what it
//! sealed.
//!
//! # Sealed format
//!
//! A sealed value is ASCII text, safe in any TEXT column:
//!
//! ```text
//! v1.<key id>.<base64url, no padding, of: nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)>
//! ```
//!
//! The nonce is drawn from the operating system's CSPRNG for every seal (XChaCha20's 192-bit
//! nonce makes random nonces safe for any realistic number of messages under one key). The
//! associated data, authenticated but not stored, is the length-prefixed concatenation of the
//! format label `ivory-vault/v1`, the key id, the *purpose* (what the value is, e.g.
//! `credentials`) and the *subject* (whose it is: the installation id) — see [`Binding`].
//!
//! # Threat model
//!
//! What it protects against:
//!
//! - **A leaked database** (a copied file, a backup, a replica, a SQL dump) without the master
//!   key: the secrets in it are unreadable.
//! - **Tampering**: any change to a sealed value (one flipped bit) fails authentication.
//! - **Moving a sealed value**: because the installation id and the purpose are bound as
//!   associated data, someone with write access to the database but not the key cannot copy
//!   tenant A's sealed token into tenant B's installation (so B's syncs would run as A), nor
//!   reuse a value sealed for one purpose as another. Opening fails with
//!   [`VaultError::Authentication`].
//!
//! What it does not protect against:
//!
//! - **Anyone holding the key**: the `ivory` process itself, its memory, the Unix user that can
//!   read the key file or the process environment. A key file next to the database is in the
//!   same backups as the database: keep the key elsewhere (the environment, a secret manager
//!   that sets it, or a key file on another volume) when backups leave the machine.
//! - **Rollback**: an older sealed value of the *same* installation and purpose (for example a
//!   refresh token from last week's backup) still opens; the row version is not bound.
//! - **Deletion** of a row, and **metadata**: which installations have credentials, their kind,
//!   version, update time, and roughly how long the secret is.
//! - **The tenant column**: the binding is to the installation id, which is unique across
//!   tenants; re-pointing a whole installation to another tenant moves its credentials with it.
//!
//! # Hygiene
//!
//! Keys live only inside the cipher objects (zeroed on drop); decoded key bytes, key files'
//! text and decrypted plaintext are held in zeroizing buffers. `Debug` of every type here shows
//! key ids, never key bytes or plaintext, and no error message ever contains either.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use ivory_sdk::Secret;
use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

/// The environment variable holding the master key list.
pub const MASTER_KEY_ENV: &str = "IVORY_MASTER_KEY";

/// The current format's version tag.
const FORMAT_V1: &str = "v1";
/// The label bound first in every associated data, so other uses of the key can never collide.
const AAD_LABEL: &[u8] = b"ivory-vault/v1";
/// The label of key fingerprints.
const FINGERPRINT_LABEL: &[u8] = b"ivory-vault/key-id/v1\0";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_KEY_ID_LEN: usize = 64;

/// A vault failure. Messages never contain plaintext or key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// `IVORY_MASTER_KEY` or a key file's content is not a valid key list.
    #[error("{origin} is malformed: {reason}")]
    InvalidKeys {
        /// Where the keys came from: `IVORY_MASTER_KEY` or `key file PATH`.
        origin: String,
        /// What is wrong (names entries by position and id, never shows key text).
        reason: String,
    },
    /// An existing key file is accessible to group or others, so it is refused.
    #[error(
        "refusing to use key file {path}: its mode is {mode:04o}, so users other than its owner \
         can access it; restrict it with `chmod 600 {path}` (and consider the key compromised if \
         others could read it)",
        path = path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file could not be read or created.
    #[error("cannot {action} key file {path}: {source}", path = path.display())]
    KeyFile {
        /// `read`, `create`, …
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A value could not be sealed (it is too large for the cipher).
    #[error("cannot seal the {purpose} of {subject}: the value is too large")]
    Seal {
        /// The binding's purpose.
        purpose: String,
        /// The binding's subject.
        subject: String,
    },
    /// The stored text is not a sealed value of any known format.
    #[error("the sealed {purpose} of {subject} is malformed: {reason}")]
    Malformed {
        /// The binding's purpose.
        purpose: String,
        /// The binding's subject.
        subject: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The value was sealed under a key that is not loaded.
    #[error(
        "the sealed {purpose} of {subject} needs master key {key_id}, which is not loaded \
         (loaded: {loaded}); add it to {MASTER_KEY_ENV}",
        loaded = loaded.join(", ")
    )]
    UnknownKey {
        /// The binding's purpose.
        purpose: String,
        /// The binding's subject.
        subject: String,
        /// The key the value names.
        key_id: String,
        /// The ids of the loaded keys.
        loaded: Vec<String>,
    },
    /// Authentication failed: the value was altered, or sealed for another subject or purpose
    /// (a row copied from another installation), or a different key carries the same id.
    #[error(
        "cannot open the sealed {purpose} of {subject} with master key {key_id}: it was altered, \
         or sealed for another installation or purpose"
    )]
    Authentication {
        /// The binding's purpose.
        purpose: String,
        /// The binding's subject (installation id).
        subject: String,
        /// The key that was tried.
        key_id: String,
    },
}

impl VaultError {
    /// Whether a sealed value failed authentication (tampered with, or moved from another
    /// installation or purpose).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, VaultError::Authentication { .. })
    }

    /// Whether the master key configuration is at fault (malformed, insecure, unreadable, or a
    /// needed key missing): an operator's fix, not a data problem.
    pub fn is_key_configuration(&self) -> bool {
        matches!(
            self,
            VaultError::InvalidKeys { .. }
                | VaultError::InsecureKeyFile { .. }
                | VaultError::KeyFile { .. }
                | VaultError::UnknownKey { .. }
        )
    }
}

/// What a sealed value is bound to: its purpose and its subject, authenticated as associated
/// data. Opening with a different binding than sealing fails.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    purpose: &'a str,
    subject: &'a str,
}

impl<'a> Binding<'a> {
    /// The purpose of an installation's stored credentials.
    pub const CREDENTIALS: &'static str = "credentials";

    /// A binding of `purpose` (what the value is, e.g. `credentials`, `webhook_secret`) to
    /// `subject` (whose it is, e.g. an installation id).
    pub fn new(purpose: &'a str, subject: &'a str) -> Self {
        Self { purpose, subject }
    }

    /// The binding of an installation's credentials.
    pub fn credentials(installation: &'a str) -> Self {
        Self::new(Self::CREDENTIALS, installation)
    }

    /// The purpose.
    pub fn purpose(&self) -> &'a str {
        self.purpose
    }

    /// The subject.
    pub fn subject(&self) -> &'a str {
        self.subject
    }

    /// The associated data: each part length-prefixed, so no two bindings encode alike.
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        let parts: [&[u8]; 4] = [
            AAD_LABEL,
            key_id.as_bytes(),
            self.purpose.as_bytes(),
            self.subject.as_bytes(),
        ];
        let mut aad = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
        for part in parts {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    fn malformed(&self, reason: &'static str) -> VaultError {
        VaultError::Malformed {
            purpose: self.purpose.to_owned(),
            subject: self.subject.to_owned(),
            reason,
        }
    }
}

/// One master key: its id, its fingerprint, and the cipher holding the key bytes (zeroed on
/// drop).
#[derive(Clone)]
struct MasterKey {
    id: String,
    fingerprint: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The loaded master keys: the first seals, all open. `Debug` shows only key ids.
#[derive(Clone)]
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MasterKeys {
    /// Parses the value of `IVORY_MASTER_KEY`: `[ID:]BASE64[,[ID:]BASE64…]`, each key the
    /// base64 (standard or URL-safe, padding optional) of 32 bytes, ids of 1–64 characters of
    /// `A-Z a-z 0-9 _ -`. The first key seals, all open. Errors name the variable and the
    /// entry, never the key text.
    pub fn from_env_value(value: &str) -> Result<Self, VaultError> {
        Self::parse(value, MASTER_KEY_ENV.to_owned())
    }

    /// Loads the keys from `path`, creating it with one fresh key and mode `0600` when it does
    /// not exist (atomically: a concurrent creator's file wins and is read). An existing file
    /// that group or others can access is refused ([`VaultError::InsecureKeyFile`]); its
    /// content has the syntax of [`MasterKeys::from_env_value`].
    pub fn from_key_file(path: &Path) -> Result<Self, VaultError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_key_file(path)?,
            Err(source) => {
                return Err(VaultError::KeyFile {
                    action: "open",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        read_key_file(file, path)
    }

    /// The platform's keys: from `env` (the value of `IVORY_MASTER_KEY`) when it is set and
    /// not blank, else from `key_file` (created on first use).
    pub fn load(env: Option<&str>, key_file: &Path) -> Result<Self, VaultError> {
        match env {
            Some(value) if !value.trim().is_empty() => Self::from_env_value(value),
            _ => Self::from_key_file(key_file),
        }
    }

    /// A fresh random key, as base64 text (a valid `IVORY_MASTER_KEY` entry or key file).
    pub fn generate_key() -> Result<Secret, VaultError> {
        let key = Zeroizing::new(<[u8; KEY_LEN]>::try_generate().map_err(|_| VaultError::Random)?);
        Ok(Secret::new(
            base64::engine::general_purpose::STANDARD.encode(key.as_slice()),
        ))
    }

    /// The id of the key that seals new values.
    pub fn primary_id(&self) -> &str {
        // `parse` refuses an empty list, so the first key exists.
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    /// The ids of every loaded key, the sealing key first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    fn parse(value: &str, origin: String) -> Result<Self, VaultError> {
        let invalid = |reason: String| VaultError::InvalidKeys {
            origin: origin.clone(),
            reason,
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid("it holds no key".into()));
        }
        let mut keys: Vec<MasterKey> = Vec::new();
        for (index, entry) in value.split(',').enumerate() {
            let n = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(invalid(format!(
                    "entry {n} is empty (expected [ID:]BASE64 entries separated by commas)"
                )));
            }
            let (id, text) = match entry.split_once(':') {
                Some((id, text)) => {
                    let id = id.trim();
                    if !valid_key_id(id) {
                        return Err(invalid(format!(
                            "entry {n} has an invalid key id (use 1–{MAX_KEY_ID_LEN} characters \
                             of A-Z a-z 0-9 _ -)"
                        )));
                    }
                    (Some(id), text.trim())
                }
                None => (None, entry),
            };
            let shown = match id {
                Some(id) => format!("entry {n} ({id})"),
                None => format!("entry {n}"),
            };
            let bytes = decode_key(text).ok_or_else(|| {
                invalid(format!(
                    "{shown} is not the base64 of {KEY_LEN} bytes (generate one with \
                     `openssl rand -base64 32`)"
                ))
            })?;
            let fingerprint = fingerprint(&bytes);
            let id = id.map_or_else(|| fingerprint.clone(), str::to_owned);
            if keys.iter().any(|k| k.id == id) {
                return Err(invalid(format!("{shown}: key id {id} appears twice")));
            }
            let key = <&Key>::try_from(bytes.as_slice())
                .map_err(|_| invalid(format!("{shown} has the wrong length")))?;
            keys.push(MasterKey {
                id,
                fingerprint,
                cipher: XChaCha20Poly1305::new(key),
            });
        }
        Ok(Self { keys })
    }

    fn primary(&self) -> Option<&MasterKey> {
        self.keys.first()
    }

    fn find(&self, key_id: &str) -> Option<&MasterKey> {
        self.keys
            .iter()
            .find(|k| k.id == key_id)
            .or_else(|| self.keys.iter().find(|k| k.fingerprint == key_id))
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Decodes standard or URL-safe base64, padded or not, of exactly [`KEY_LEN`] bytes. The
/// decoder's own error is dropped: it quotes the offending byte, which is key material.
fn decode_key(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    for engine in [
        GeneralPurpose::new(&alphabet::STANDARD, config),
        GeneralPurpose::new(&alphabet::URL_SAFE, config),
    ] {
        if let Ok(bytes) = engine.decode(text) {
            let bytes = Zeroizing::new(bytes);
            return (bytes.len() == KEY_LEN).then_some(bytes);
        }
    }
    None
}

fn fingerprint(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(FINGERPRINT_LABEL)
        .chain_update(key)
        .finalize();
    let mut id = String::from("fp-");
    for byte in &digest[..8] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// Writes a fresh key to a temporary file (mode 0600) beside `path`, then links it into place,
/// which fails if `path` appeared meanwhile: readers never see a half-written key file, and of
/// two concurrent creators exactly one key wins. Returns the file now at `path`, opened.
fn create_key_file(path: &Path) -> Result<File, VaultError> {
    let create_error = |source: io::Error| VaultError::KeyFile {
        action: "create",
        path: path.to_owned(),
        source,
    };
    let suffix = <[u8; 8]>::try_generate().map_err(|_| VaultError::Random)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".{suffix}.tmp"));
    let tmp = PathBuf::from(tmp_name);

    let key = MasterKeys::generate_key()?;
    let written = (|| -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(key.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "Created a new master key file.");
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_error(e)),
    }
    File::open(path).map_err(|source| VaultError::KeyFile {
        action: "open",
        path: path.to_owned(),
        source,
    })
}

fn read_key_file(mut file: File, path: &Path) -> Result<MasterKeys, VaultError> {
    let read_error = |source: io::Error| VaultError::KeyFile {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(VaultError::InsecureKeyFile {
                path: path.to_owned(),
                mode,
            });
        }
    }
    // Reserved up front so reading does not reallocate and leave unzeroed copies behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    file.read_to_end(&mut bytes).map_err(read_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::InvalidKeys {
        origin: format!("key file {}", path.display()),
        reason: "it is not UTF-8 text".into(),
    })?;
    MasterKeys::parse(text, format!("key file {}", path.display()))
}

/// Decrypted bytes, zeroed on drop; `Debug` is redacted.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// The decrypted bytes. **Security:** never log, print or store them in plain text.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext([REDACTED])")
    }
}

/// Seals and opens values under the [`MasterKeys`]. Cheap to clone; `Debug` shows key ids only.
#[derive(Debug, Clone)]
pub struct Vault {
    keys: MasterKeys,
}

impl Vault {
    /// A vault over `keys`.
    pub fn new(keys: MasterKeys) -> Self {
        Self { keys }
    }

    /// The keys.
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// Encrypts `plaintext` under the primary key, bound to `binding`; returns the sealed text
    /// (`v1.<key id>.<base64url>`).
    pub fn seal(&self, binding: Binding<'_>, plaintext: &[u8]) -> Result<String, VaultError> {
        let key = self.keys.primary().ok_or_else(|| VaultError::InvalidKeys {
            origin: "the vault".into(),
            reason: "it holds no key".into(),
        })?;
        let nonce = XNonce::try_generate().map_err(|_| VaultError::Random)?;
        let aad = binding.associated_data(&key.id);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal {
                purpose: binding.purpose.to_owned(),
                subject: binding.subject.to_owned(),
            })?;
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(nonce.as_slice());
        body.extend_from_slice(&ciphertext);
        Ok(format!(
            "{FORMAT_V1}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(&body)
        ))
    }

    /// Decrypts a sealed value, checking that it was sealed for `binding`. Fails with
    /// [`VaultError::Authentication`] when it was altered or sealed for another binding.
    pub fn open(&self, binding: Binding<'_>, sealed: &str) -> Result<Plaintext, VaultError> {
        let (key_id, body) = split_sealed(sealed).map_err(|reason| binding.malformed(reason))?;
        let key = self
            .keys
            .find(key_id)
            .ok_or_else(|| VaultError::UnknownKey {
                purpose: binding.purpose.to_owned(),
                subject: binding.subject.to_owned(),
                key_id: key_id.to_owned(),
                loaded: self.keys.ids().map(str::to_owned).collect(),
            })?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| binding.malformed("its body is not base64url"))?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(binding.malformed("its body is too short"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = <&XNonce>::try_from(nonce).map_err(|_| binding.malformed("bad nonce"))?;
        // The key id as written in the value is what was bound (it may be a fingerprint).
        let aad = binding.associated_data(key_id);
        let plaintext = key
            .cipher
            .decrypt(
                nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Authentication {
                purpose: binding.purpose.to_owned(),
                subject: binding.subject.to_owned(),
                key_id: key_id.to_owned(),
            })?;
        Ok(Plaintext(Zeroizing::new(plaintext)))
    }

    /// Whether `sealed` was sealed under a key other than the primary one, i.e. would be
    /// re-sealed by a key rotation sweep. Malformed values count as needing it.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        match split_sealed(sealed) {
            Ok((key_id, _)) => key_id != self.keys.primary_id(),
            Err(_) => true,
        }
    }
}

/// Splits `v1.<key id>.<body>`. Nothing of an unrecognized value is echoed back: a legacy row
/// holding a plaintext token (a JWT has dots) must not end up in an error message.
fn split_sealed(sealed: &str) -> Result<(&str, &str), &'static str> {
    let mut parts = sealed.splitn(3, '.');
    let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("it is not of the form v1.<key id>.<data>");
    };
    if version != FORMAT_V1 {
        return Err("unsupported format version");
    }
    if !valid_key_id(key_id) {
        return Err("its key id is invalid");
    }
    Ok((key_id, body))
}
