//! The marketplace registry: a listing is published only with a passing report of the same
//! publisher for exactly the manifest and source being published.

use ivory_runtime::marketplace::{
    CertificationReport, CheckResult, PublishError, manifest_digest, source_digest,
};
use ivory_sdk::Secret;
use ivory_sdk::manifest::CursorKind;
use ivory_testkit::connectors::items_manifest;

use crate::support::{env, t0};

fn report(
    manifest: &ivory_sdk::manifest::Manifest,
    source: &str,
    passed: bool,
) -> CertificationReport {
    CertificationReport {
        connector_id: manifest.id.clone(),
        version: manifest.version.clone(),
        manifest_digest: manifest_digest(manifest).expect("digest"),
        source_digest: source.to_owned(),
        passed,
        checks: vec![CheckResult {
            name: "secret scan".into(),
            passed,
            evidence: "0 findings".into(),
        }],
        generated_at: t0(),
    }
}

#[tokio::test]
async fn only_exactly_what_was_certified_is_published() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("target/debug")).expect("mkdir");
    std::fs::write(dir.path().join("src/lib.rs"), "pub fn a() {}\n").expect("write");
    std::fs::write(dir.path().join("target/debug/junk"), "ignored").expect("write");
    let manifest = items_manifest("acme-items", CursorKind::OpaqueToken, 600);
    let digest = source_digest(dir.path()).expect("digest");
    // Build output does not change the digest.
    std::fs::write(dir.path().join("target/debug/junk"), "changed").expect("write");
    assert_eq!(source_digest(dir.path()).expect("digest"), digest);

    let (publisher, token) = env
        .store
        .create_publisher("Acme Inc.", t0())
        .await
        .expect("publisher");
    let (other, _) = env
        .store
        .create_publisher("Mallory", t0())
        .await
        .expect("other");
    assert!(
        env.store.create_publisher("Acme Inc.", t0()).await.is_err(),
        "names are unique"
    );

    let unknown = env
        .store
        .publish(
            &Secret::new("ivp_not_a_real_token"),
            &manifest,
            &digest,
            t0(),
        )
        .await;
    assert!(
        matches!(unknown, Err(PublishError::UnknownToken)),
        "{unknown:?}"
    );
    let uncertified = env.store.publish(&token, &manifest, &digest, t0()).await;
    assert!(
        matches!(uncertified, Err(PublishError::NotCertified { .. })),
        "{uncertified:?}"
    );

    // A failing report, and another publisher's passing one, do not count.
    env.store
        .submit_report(&publisher, &report(&manifest, &digest, false), t0())
        .await
        .expect("submit");
    env.store
        .submit_report(&other, &report(&manifest, &digest, true), t0())
        .await
        .expect("submit");
    assert!(matches!(
        env.store.publish(&token, &manifest, &digest, t0()).await,
        Err(PublishError::NotCertified { .. })
    ));

    env.store
        .submit_report(&publisher, &report(&manifest, &digest, true), t0())
        .await
        .expect("submit");
    // One byte of source changed after certification: refused.
    std::fs::write(dir.path().join("src/lib.rs"), "pub fn b() {}\n").expect("write");
    let changed = source_digest(dir.path()).expect("digest");
    assert_ne!(changed, digest);
    let refused = env.store.publish(&token, &manifest, &changed, t0()).await;
    match refused {
        Err(error @ PublishError::NotCertified { .. }) => {
            assert!(error.to_string().contains("run `ivory certify`"))
        }
        other => panic!("expected NotCertified, got {other:?}"),
    }
    // A different manifest (another version) is not covered either.
    let mut next = manifest.clone();
    next.version = "0.2.0".into();
    assert!(matches!(
        env.store.publish(&token, &next, &digest, t0()).await,
        Err(PublishError::NotCertified { .. })
    ));

    let listing = env
        .store
        .publish(&token, &manifest, &digest, t0())
        .await
        .expect("published");
    assert_eq!(listing.publisher_id, publisher.id);
    assert!(matches!(
        env.store.publish(&token, &manifest, &digest, t0()).await,
        Err(PublishError::AlreadyPublished { .. })
    ));
    let latest = env
        .store
        .latest_listing("acme-items")
        .await
        .expect("read")
        .expect("listed");
    assert_eq!(latest.version, "0.1.0");
    assert_eq!(latest.manifest, manifest);
    let events = env.store.audit_events("marketplace").await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.event_type == "audit.listing.create")
    );
}
