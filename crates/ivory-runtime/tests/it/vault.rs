//! The credentials vault over a real SQLite store: round trips, AAD binding (a row copied to
//! another installation does not open), tampering, key rotation, key files and their
//! permissions, the master key parser, the compare-and-swap, and no secret in the database's
//! bytes or in any `Debug` output.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ivory_runtime::store::{CredentialsError, GrantVersion, OAuth2Grant, StoredGrant, Swap};
use ivory_runtime::vault::{Binding, MASTER_KEY_ENV};
use ivory_runtime::{MasterKeys, Store, Vault, VaultError};
use ivory_sdk::manifest::CursorKind;
use ivory_sdk::{Credentials, Secret};
use ivory_testkit::connectors::items_manifest;
use jiff::Timestamp;

use crate::support::{Env, env, t0};

const ACCESS: &str = "ya29.test-access-token-do-not-leak-0001";
const REFRESH: &str = "1//test-refresh-token-do-not-leak-0002";
const API_KEY: &str = "sk_test_ivory_vault_fake_key_0003";

fn new_key() -> Secret {
    MasterKeys::generate_key().expect("random key")
}

fn vault_of(env_value: &str) -> Vault {
    Vault::new(MasterKeys::from_env_value(env_value).expect("valid keys"))
}

fn oauth2(access: &str) -> StoredGrant {
    StoredGrant::OAuth2(OAuth2Grant {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(REFRESH)),
        expires_at: Some(t0()),
        scopes: vec!["crm.objects.contacts.read".into(), "oauth".into()],
        token_type: "Bearer".into(),
    })
}

fn api_key() -> StoredGrant {
    StoredGrant::ApiKey(Secret::new(API_KEY))
}

async fn installation(store: &Store, tenant: &str) -> String {
    store
        .ensure_installation(
            tenant,
            &items_manifest("items", CursorKind::None, 600),
            &BTreeMap::new(),
            t0(),
        )
        .await
        .expect("installation")
        .id
}

/// A second connection to the store's file, to read and write rows behind its back.
async fn raw(env: &Env) -> sqlx::AnyPool {
    env.raw().await
}

async fn raw_payload(db: &sqlx::AnyPool, installation: &str) -> String {
    sqlx::query_scalar("SELECT payload FROM credentials WHERE installation_id = $1")
        .bind(installation)
        .fetch_one(db)
        .await
        .expect("raw payload")
}

async fn set_raw_payload(db: &sqlx::AnyPool, installation: &str, payload: &str) {
    sqlx::query("UPDATE credentials SET payload = $1 WHERE installation_id = $2")
        .bind(payload)
        .bind(installation)
        .execute(db)
        .await
        .expect("raw update");
}

fn expect_oauth2(grant: &StoredGrant) -> &OAuth2Grant {
    match grant {
        StoredGrant::OAuth2(g) => g,
        other => panic!("expected an OAuth2 grant, got {other:?}"),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).expect("time")
}

#[tokio::test]
async fn grants_round_trip_and_convert_for_the_runner() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let vault = vault_of(new_key().expose());

    assert!(
        env.store
            .credentials(&inst, &vault)
            .await
            .expect("read")
            .is_none()
    );

    let v1 = env
        .store
        .put_credentials(&inst, &api_key(), &vault, t0())
        .await
        .expect("put api key");
    let (grant, version) = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(version, v1);
    match &grant {
        StoredGrant::ApiKey(key) => assert_eq!(key.expose(), API_KEY),
        other => panic!("expected an api key, got {other:?}"),
    }
    assert_eq!(grant.kind(), "api_key");
    match grant.to_credentials() {
        Credentials::ApiKey(key) => assert_eq!(key.expose(), API_KEY),
        other => panic!("expected Credentials::ApiKey, got {other:?}"),
    }

    // A put replaces, and the version moves on.
    let v2 = env
        .store
        .put_credentials(&inst, &oauth2(ACCESS), &vault, at(1_000))
        .await
        .expect("put oauth2");
    assert_ne!(v2, v1);
    assert_eq!(v2.get(), v1.get() + 1);
    let (grant, version) = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(version, v2);
    let g = expect_oauth2(&grant);
    assert_eq!(g.access_token.expose(), ACCESS);
    assert_eq!(g.refresh_token.as_ref().map(Secret::expose), Some(REFRESH));
    assert_eq!(g.expires_at, Some(t0()));
    assert_eq!(g.scopes, ["crm.objects.contacts.read", "oauth"]);
    assert_eq!(g.token_type, "Bearer");
    match Credentials::from(grant) {
        Credentials::OAuth2 {
            access_token,
            expires_at,
        } => {
            assert_eq!(access_token.expose(), ACCESS);
            assert_eq!(expires_at, Some(t0()));
        }
        other => panic!("expected Credentials::OAuth2, got {other:?}"),
    }

    // A grant without refresh token or expiry round-trips too.
    let bare = StoredGrant::OAuth2(OAuth2Grant {
        access_token: Secret::new(ACCESS),
        refresh_token: None,
        expires_at: None,
        scopes: Vec::new(),
        token_type: "bearer".into(),
    });
    env.store
        .put_credentials(&inst, &bare, &vault, at(2_000))
        .await
        .expect("put bare");
    let (grant, _) = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect("read")
        .expect("some");
    let g = expect_oauth2(&grant);
    assert!(g.refresh_token.is_none() && g.expires_at.is_none() && g.scopes.is_empty());

    // Reopening the store (another process) reads the same grant.
    let reopened = Store::open(&env.location).await.expect("reopen");
    assert!(
        reopened
            .credentials(&inst, &vault)
            .await
            .expect("read")
            .is_some()
    );

    assert!(env.store.delete_credentials(&inst).await.expect("delete"));
    assert!(!env.store.delete_credentials(&inst).await.expect("delete"));

    // Credentials belong to an existing installation.
    let orphan = env
        .store
        .put_credentials("inst_missing", &api_key(), &vault, t0())
        .await
        .expect_err("no such installation");
    assert!(matches!(orphan, CredentialsError::Store(_)), "{orphan:?}");
    assert!(!orphan.to_string().contains(API_KEY));
    assert!(
        env.store
            .credentials(&inst, &vault)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_row_copied_to_another_installation_does_not_open() {
    let env = env().await;
    let victim = installation(&env.store, "tenant-a").await;
    let attacker = installation(&env.store, "tenant-b").await;
    let vault = vault_of(new_key().expose());
    env.store
        .put_credentials(&victim, &oauth2(ACCESS), &vault, t0())
        .await
        .expect("put a");
    env.store
        .put_credentials(&attacker, &api_key(), &vault, t0())
        .await
        .expect("put b");

    // Someone with write access to the database, but not the key, copies A's row onto B.
    let db = raw(&env).await;
    sqlx::query(
        "UPDATE credentials SET kind = (SELECT kind FROM credentials WHERE installation_id = $1), \
         payload = (SELECT payload FROM credentials WHERE installation_id = $1) \
         WHERE installation_id = $2",
    )
    .bind(&victim)
    .bind(&attacker)
    .execute(&db)
    .await
    .expect("copy row");

    let error = env
        .store
        .credentials(&attacker, &vault)
        .await
        .expect_err("a copied row must not open");
    assert!(error.is_authentication_failure(), "{error:?}");
    assert!(
        matches!(
            &error,
            CredentialsError::Vault(VaultError::Authentication { subject, purpose, .. })
                if subject == &attacker && purpose == "credentials"
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&attacker), "{message}");
    assert!(message.contains("another installation"), "{message}");
    assert!(!message.contains(ACCESS) && !message.contains(REFRESH));

    // The original still opens where it belongs.
    let (grant, _) = env
        .store
        .credentials(&victim, &vault)
        .await
        .expect("a still opens")
        .expect("some");
    assert_eq!(expect_oauth2(&grant).access_token.expose(), ACCESS);
}

#[tokio::test]
async fn a_flipped_byte_does_not_open() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let vault = vault_of(new_key().expose());
    env.store
        .put_credentials(&inst, &oauth2(ACCESS), &vault, t0())
        .await
        .expect("put");
    let db = raw(&env).await;
    let original = raw_payload(&db, &inst).await;
    let (header, body) = original.rsplit_once('.').expect("v1.<id>.<body>");
    let bytes = URL_SAFE_NO_PAD.decode(body).expect("base64url body");

    // A bit flipped in the nonce, in the ciphertext, and in the tag.
    for index in [0, 23, 24, bytes.len() / 2, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[index] ^= 0x01;
        let payload = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&tampered));
        set_raw_payload(&db, &inst, &payload).await;
        let error = env
            .store
            .credentials(&inst, &vault)
            .await
            .expect_err("a tampered row must not open");
        assert!(error.is_authentication_failure(), "byte {index}: {error:?}");
    }

    // Truncated, garbled, or plaintext rows are malformed, and the error quotes none of them.
    for payload in [
        format!("{header}.AAAA"),
        format!("{header}.!!!"),
        "v9.k1.AAAA".to_owned(),
        ACCESS.to_owned(),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl".to_owned(),
    ] {
        set_raw_payload(&db, &inst, &payload).await;
        let error = env
            .store
            .credentials(&inst, &vault)
            .await
            .expect_err("a malformed row must not open");
        assert!(
            matches!(error, CredentialsError::Vault(VaultError::Malformed { .. })),
            "{error:?}"
        );
        assert!(!error.to_string().contains(&payload), "{error}");
    }

    // Restored, it opens again.
    set_raw_payload(&db, &inst, &original).await;
    assert!(
        env.store
            .credentials(&inst, &vault)
            .await
            .expect("restored")
            .is_some()
    );

    // A row whose kind column was changed no longer matches its sealed grant.
    sqlx::query("UPDATE credentials SET kind = 'api_key' WHERE installation_id = $1")
        .bind(&inst)
        .execute(&db)
        .await
        .expect("raw update");
    let error = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect_err("kind mismatch");
    assert!(
        matches!(error, CredentialsError::Corrupt { .. }),
        "{error:?}"
    );
}

#[test]
fn the_purpose_and_the_subject_are_bound() {
    let vault = vault_of(new_key().expose());
    let sealed = vault
        .seal(Binding::credentials("inst_1"), b"secret bytes")
        .expect("seal");
    assert_eq!(
        vault
            .open(Binding::credentials("inst_1"), &sealed)
            .expect("open")
            .expose(),
        b"secret bytes"
    );
    for wrong in [
        Binding::credentials("inst_2"),
        Binding::new("webhook_secret", "inst_1"),
        // Length prefixes: moving a character from purpose to subject changes the binding.
        Binding::new("credential", "sinst_1"),
    ] {
        let error = vault.open(wrong, &sealed).expect_err("wrong binding");
        assert!(error.is_authentication_failure(), "{error:?}");
    }

    // Two seals of the same value differ (random nonce) and both open.
    let again = vault
        .seal(Binding::credentials("inst_1"), b"secret bytes")
        .expect("seal");
    assert_ne!(sealed, again);
    assert!(vault.open(Binding::credentials("inst_1"), &again).is_ok());
}

#[tokio::test]
async fn rotation_opens_old_values_and_seals_new_ones_with_the_first_key() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let (k1, k2) = (new_key(), new_key());
    let before = vault_of(&format!("k1:{}", k1.expose()));
    env.store
        .put_credentials(&inst, &oauth2(ACCESS), &before, t0())
        .await
        .expect("put under k1");
    let db = raw(&env).await;
    let old_payload = raw_payload(&db, &inst).await;
    assert!(old_payload.starts_with("v1.k1."), "{old_payload}");

    let after = vault_of(&format!("k2:{},k1:{}", k2.expose(), k1.expose()));
    assert_eq!(after.keys().primary_id(), "k2");
    assert_eq!(after.keys().ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert!(after.needs_reseal(&old_payload));
    let (grant, version) = env
        .store
        .credentials(&inst, &after)
        .await
        .expect("k1 still opens")
        .expect("some");
    assert_eq!(expect_oauth2(&grant).access_token.expose(), ACCESS);

    // A new write (here a refresh) is sealed under k2.
    let swap = env
        .store
        .replace_credentials_if(&inst, version, &oauth2("rotated-access"), &after, at(5))
        .await
        .expect("replace");
    assert!(matches!(swap, Swap::Swapped { .. }), "{swap:?}");
    let new_payload = raw_payload(&db, &inst).await;
    assert!(new_payload.starts_with("v1.k2."), "{new_payload}");
    assert!(!after.needs_reseal(&new_payload));

    // Once k1 is retired, what it sealed names it clearly.
    let only_k2 = vault_of(&format!("k2:{}", k2.expose()));
    let sealed_by_k1 = only_k2
        .open(Binding::credentials(&inst), &old_payload)
        .expect_err("k1 is gone");
    assert!(sealed_by_k1.is_key_configuration(), "{sealed_by_k1:?}");
    let message = sealed_by_k1.to_string();
    assert!(
        message.contains("k1") && message.contains(MASTER_KEY_ENV),
        "{message}"
    );
    assert!(
        env.store
            .credentials(&inst, &only_k2)
            .await
            .expect("k2 opens")
            .is_some()
    );

    // The same key under another id is not the same key id: refused, clearly.
    let renamed = vault_of(&format!("other:{}", k2.expose()));
    assert!(matches!(
        renamed.open(Binding::credentials(&inst), &new_payload),
        Err(VaultError::UnknownKey { .. })
    ));
}

#[test]
fn an_unnamed_key_is_found_by_its_fingerprint_once_named() {
    let key = new_key();
    let unnamed = vault_of(key.expose());
    let fingerprint = unnamed.keys().primary_id().to_owned();
    assert!(
        fingerprint.starts_with("fp-") && fingerprint.len() == 19,
        "{fingerprint}"
    );
    let sealed = unnamed
        .seal(Binding::credentials("inst_1"), b"value")
        .expect("seal");
    assert!(sealed.starts_with(&format!("v1.{fingerprint}.")));

    // The key file's key, later listed under a name after a newer key.
    let named = vault_of(&format!("k2:{},old:{}", new_key().expose(), key.expose()));
    assert_eq!(
        named
            .open(Binding::credentials("inst_1"), &sealed)
            .expect("found by fingerprint")
            .expose(),
        b"value"
    );
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn a_key_file_is_created_0600_on_first_use_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ivory.db.key");
    let first = MasterKeys::from_key_file(&path).expect("created");
    assert_eq!(mode_of(&path), 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.trim().len(), 44, "one base64 key");
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);

    let second = MasterKeys::from_key_file(&path).expect("reused");
    assert_eq!(first.primary_id(), second.primary_id());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    let sealed = Vault::new(first)
        .seal(Binding::credentials("inst_1"), b"value")
        .expect("seal");
    assert!(
        Vault::new(second)
            .open(Binding::credentials("inst_1"), &sealed)
            .is_ok()
    );

    // `load` takes the file when the variable is unset or blank, the variable otherwise.
    let from_file = MasterKeys::load(None, &path).expect("file");
    assert_eq!(
        from_file.primary_id(),
        MasterKeys::from_key_file(&path).expect("file").primary_id()
    );
    let blank = MasterKeys::load(Some("  "), &path).expect("file");
    assert_eq!(blank.primary_id(), from_file.primary_id());
    let from_env = MasterKeys::load(
        Some(&format!("k9:{}", new_key().expose())),
        &dir.path().join("never-created.key"),
    )
    .expect("env");
    assert_eq!(from_env.primary_id(), "k9");
    assert!(!dir.path().join("never-created.key").exists());

    // A missing directory is a clear I/O error, not a panic.
    let error = MasterKeys::from_key_file(&dir.path().join("missing/dir/ivory.key"))
        .expect_err("no directory");
    assert!(matches!(error, VaultError::KeyFile { .. }), "{error:?}");
}

#[cfg(unix)]
#[test]
fn concurrent_first_uses_agree_on_one_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("race.key");
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| MasterKeys::from_key_file(&path).map(|k| k.primary_id().to_owned()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("keys"))
            .collect()
    });
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

#[cfg(unix)]
#[test]
fn an_existing_key_file_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ivory.db.key");
    let key = new_key();
    std::fs::write(&path, format!("{}\n", key.expose())).expect("write");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let error = MasterKeys::from_key_file(&path).expect_err("refused");
        assert!(
            matches!(&error, VaultError::InsecureKeyFile { mode: m, .. } if *m == mode),
            "{error:?}"
        );
        assert!(error.is_key_configuration());
        let message = error.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(!message.contains(key.expose()), "{message}");
        // Also through `load`.
        assert!(MasterKeys::load(None, &path).is_err());
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(MasterKeys::from_key_file(&path).is_ok());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    assert!(MasterKeys::from_key_file(&path).is_ok());

    // A key file with garbage in it names the file, not the garbage.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&path, "not-a-key-material-xyz\n").expect("write");
    let error = MasterKeys::from_key_file(&path).expect_err("garbage");
    let message = error.to_string();
    assert!(message.contains("key file") && message.contains(&path.display().to_string()));
    assert!(!message.contains("not-a-key-material-xyz"), "{message}");
}

#[test]
fn malformed_master_key_values_are_clear_errors_naming_the_variable() {
    let good = new_key();
    let good = good.expose();
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no key"),
        ("   ".into(), "no key"),
        (
            "!!not base64 at all!!".into(),
            "entry 1 is not the base64 of 32 bytes",
        ),
        (
            format!("k1:{short}"),
            "entry 1 (k1) is not the base64 of 32 bytes",
        ),
        (
            format!("k1:{good},k2:{short}"),
            "entry 2 (k2) is not the base64",
        ),
        (format!("k1:{good},k1:{good}"), "key id k1 appears twice"),
        (format!("bad id!:{good}"), "entry 1 has an invalid key id"),
        (format!(":{good}"), "entry 1 has an invalid key id"),
        (format!("k1:{good},"), "entry 2 is empty"),
        (format!("k1.x:{good}"), "invalid key id"),
    ];
    for (value, expected) in &cases {
        let error = MasterKeys::from_env_value(value).expect_err(value);
        assert!(
            matches!(&error, VaultError::InvalidKeys { origin, .. } if origin == MASTER_KEY_ENV),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("IVORY_MASTER_KEY is malformed"),
            "{message}"
        );
        assert!(message.contains(expected), "{value:?}: {message}");
        assert!(
            !message.contains(good) && !message.contains(&short),
            "{message}"
        );
        assert!(!format!("{error:?}").contains(good));
    }

    // Accepted spellings: bare, named, URL-safe, unpadded, spaced, several.
    let raw = [0xfbu8; 32];
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let standard = base64::engine::general_purpose::STANDARD.encode(raw);
    for value in [
        good.to_owned(),
        format!("primary:{good}"),
        url_safe.clone(),
        standard.trim_end_matches('=').to_owned(),
        format!(" k2 : {good} , k1:{standard}\n"),
    ] {
        assert!(MasterKeys::from_env_value(&value).is_ok(), "{value}");
    }
    // The same key in either alphabet is the same key (same fingerprint).
    assert_eq!(
        MasterKeys::from_env_value(&url_safe)
            .expect("url-safe")
            .primary_id(),
        MasterKeys::from_env_value(&standard)
            .expect("standard")
            .primary_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replacements_from_one_version_exactly_one_wins() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let vault = vault_of(new_key().expose());
    let start = env
        .store
        .put_credentials(&inst, &oauth2(ACCESS), &vault, t0())
        .await
        .expect("put");

    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = env.store.clone();
            let vault = vault.clone();
            let inst = inst.clone();
            tokio::spawn(async move {
                let grant = oauth2(&format!("refreshed-{n}"));
                let outcome = store
                    .replace_credentials_if(&inst, start, &grant, &vault, at(n))
                    .await
                    .expect("replace");
                (n, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Swap::Swapped { version } => Some((*n, *version)),
            Swap::Conflict { .. } => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let (winner, version) = winners[0];
    assert_ne!(version, start);
    for (_, outcome) in &outcomes {
        if let Swap::Conflict { current_version } = outcome {
            assert_eq!(*current_version, Some(version));
        }
    }
    let (grant, stored) = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(stored, version);
    assert_eq!(
        expect_oauth2(&grant).access_token.expose(),
        format!("refreshed-{winner}")
    );

    // Across processes: a second store on the same file sees the same token.
    let other = Store::open(&env.location).await.expect("reopen");
    let stale = other
        .replace_credentials_if(&inst, start, &oauth2("stale"), &vault, at(99))
        .await
        .expect("replace");
    assert_eq!(
        stale,
        Swap::Conflict {
            current_version: Some(version)
        }
    );
    let fresh = other
        .replace_credentials_if(&inst, version, &oauth2("next"), &vault, at(100))
        .await
        .expect("replace");
    assert!(matches!(fresh, Swap::Swapped { .. }), "{fresh:?}");
}

#[tokio::test]
async fn a_version_from_before_a_delete_never_matches_the_new_row() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let vault = vault_of(new_key().expose());
    let old = env
        .store
        .put_credentials(&inst, &oauth2(ACCESS), &vault, t0())
        .await
        .expect("put");
    assert!(env.store.delete_credentials(&inst).await.expect("delete"));
    let gone = env
        .store
        .replace_credentials_if(&inst, old, &oauth2("late"), &vault, at(1))
        .await
        .expect("replace");
    assert_eq!(
        gone,
        Swap::Conflict {
            current_version: None
        }
    );

    // Reconnected: a new row, whose version is not the old one.
    let new = env
        .store
        .put_credentials(&inst, &api_key(), &vault, at(2))
        .await
        .expect("put again");
    assert_ne!(new, old);
    let late = env
        .store
        .replace_credentials_if(&inst, old, &oauth2("late"), &vault, at(3))
        .await
        .expect("replace");
    assert_eq!(
        late,
        Swap::Conflict {
            current_version: Some(new)
        }
    );
    let (grant, _) = env
        .store
        .credentials(&inst, &vault)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(grant.kind(), "api_key");
    assert_eq!(GrantVersion::from_raw(new.get()), new);
}

#[tokio::test]
async fn no_plaintext_secret_reaches_the_database() {
    let env = env().await;
    let a = installation(&env.store, "tenant-a").await;
    let b = installation(&env.store, "tenant-b").await;
    let vault = vault_of(new_key().expose());
    env.store
        .put_credentials(&a, &oauth2(ACCESS), &vault, t0())
        .await
        .expect("put");
    env.store
        .put_credentials(&b, &api_key(), &vault, t0())
        .await
        .expect("put");

    let db = raw(&env).await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT installation_id, kind, payload FROM credentials")
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 2);
    for (_, kind, payload) in &rows {
        assert!(payload.starts_with("v1."), "{payload}");
        for secret in [
            ACCESS,
            REFRESH,
            API_KEY,
            "crm.objects.contacts.read",
            "Bearer",
        ] {
            assert!(!payload.contains(secret), "{kind}: {secret} in {payload}");
        }
    }
    assert_eq!(
        rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>().len(),
        2
    );

    // Nor anywhere in the database's bytes (the file and its write-ahead log).
    db.close().await;
    env.store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let path = env._dir.path().join(format!("ivory.db{suffix}"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for secret in [ACCESS, REFRESH, API_KEY] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn debug_and_errors_show_no_secret() {
    let env = env().await;
    let inst = installation(&env.store, "acme").await;
    let key = new_key();
    let vault = vault_of(&format!("k1:{}", key.expose()));
    let grant = oauth2(ACCESS);
    let version = env
        .store
        .put_credentials(&inst, &grant, &vault, t0())
        .await
        .expect("put");
    let swap = env
        .store
        .replace_credentials_if(&inst, version, &api_key(), &vault, at(1))
        .await
        .expect("replace");
    let plaintext = vault
        .open(
            Binding::credentials("x"),
            &vault
                .seal(Binding::credentials("x"), ACCESS.as_bytes())
                .expect("seal"),
        )
        .expect("open");
    assert_eq!(plaintext.expose(), ACCESS.as_bytes());

    let wrong_vault = vault_of(&format!("k1:{}", new_key().expose()));
    let auth_error = env
        .store
        .credentials(&inst, &wrong_vault)
        .await
        .expect_err("same id, other key");
    assert!(auth_error.is_authentication_failure());
    let env_error =
        MasterKeys::from_env_value(&format!("k1:{}x", key.expose())).expect_err("bad length");

    let shown = [
        format!("{grant:?}"),
        format!("{:?}", expect_oauth2(&grant)),
        format!("{:?}", api_key()),
        format!("{:?}", grant.to_credentials()),
        format!("{:?}", Credentials::from(api_key())),
        format!("{vault:?}"),
        format!("{:?}", vault.keys()),
        format!("{plaintext:?}"),
        format!("{swap:?} {version:?} {version}"),
        format!("{auth_error:?} {auth_error}"),
        format!("{env_error:?} {env_error}"),
        format!("{:?}", Binding::credentials(&inst)),
    ];
    for text in &shown {
        for secret in [ACCESS, REFRESH, API_KEY, key.expose()] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
    assert!(shown[0].contains("REDACTED"), "{}", shown[0]);
    assert!(shown[5].contains("k1"), "{}", shown[5]);
    assert_eq!(shown[7], "Plaintext([REDACTED])");
}
