//! Webhook verifications per second for a 2 KB body, per scheme, next to a bare HMAC-SHA256 over
//! the same bytes (the floor), plus the in-memory replay guard.
//!
//! Run: `cargo bench -p ivory-sdk --bench webhook`. Results go in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use ivory_sdk::webhook::{
    Delivery, HmacSha256Config, InMemoryReplayGuard, ReplayKey, Scheme, SignatureEncoding, Verifier,
};
use jiff::{SignedDuration, Timestamp};
use sha2::Sha256;

const BODY_LEN: usize = 2048;

/// A 2048-byte JSON body shaped like a Stripe event.
fn body() -> Vec<u8> {
    let mut body = br#"{"id":"evt_bench_0001","object":"event","type":"invoice.payment_failed","data":{"object":{"id":"in_bench","lines":""#.to_vec();
    while body.len() < BODY_LEN - 4 {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(br#""}}}"#);
    body.truncate(BODY_LEN);
    body
}

fn schemes() -> Vec<(&'static str, Scheme, &'static str)> {
    vec![
        (
            "stripe",
            Scheme::Stripe,
            "whsec_test_ivory_fake_secret_0000",
        ),
        (
            "hubspot-v3",
            Scheme::HubSpotV3,
            "ivory-fake-hubspot-client-secret-0000",
        ),
        (
            "airtable",
            Scheme::Airtable,
            "ivoryFakeAirtableMacSecret000000",
        ),
        (
            "standard-webhooks",
            Scheme::StandardWebhooks,
            "whsec_ivoryFakeTestSecret0000000000000",
        ),
        (
            "hmac-sha256",
            Scheme::HmacSha256(
                HmacSha256Config::new(
                    HeaderName::from_static("x-hub-signature-256"),
                    SignatureEncoding::Hex,
                )
                .with_prefix("sha256="),
            ),
            "ivory-fake-plain-hmac-secret-0000",
        ),
    ]
}

fn verify(c: &mut Criterion) {
    let body = body();
    assert_eq!(body.len(), BODY_LEN);
    let now = Timestamp::from_second(1_700_000_000).expect("time");
    let mut group = c.benchmark_group("webhook_verify_2KiB");
    group.throughput(Throughput::Elements(1));

    group.bench_function("bare_hmac_sha256", |b| {
        let key = b"whsec_test_ivory_fake_secret_0000";
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(key)).expect("key");
            mac.update(black_box(&body));
            black_box(mac.finalize().into_bytes())
        })
    });

    for (name, scheme, secret) in schemes() {
        let verifier = Verifier::new(scheme, secret).expect("secret");
        let delivery = verifier
            .sign(
                Delivery::new(HeaderMap::new(), body.clone())
                    .with_url("https://hooks.ivory.test/webhooks/hubspot%3Ainst?installation=7"),
                now,
            )
            .expect("signs");
        verifier.verify_at(&delivery, now).expect("valid");
        group.bench_function(name, |b| {
            b.iter(|| black_box(verifier.verify_at(black_box(&delivery), now)))
        });
    }

    // The whole server path for Stripe: verify, then check-and-remember in a full cache.
    let verifier =
        Verifier::new(Scheme::Stripe, "whsec_test_ivory_fake_secret_0000").expect("secret");
    let delivery = verifier
        .sign(Delivery::new(HeaderMap::new(), body.clone()), now)
        .expect("signs");
    let guard = InMemoryReplayGuard::default();
    let expires = now + SignedDuration::from_secs(300);
    let mut counter: u64 = 0;
    group.bench_function("stripe+in_memory_replay_guard", |b| {
        b.iter(|| {
            let verified = verifier.verify_at(&delivery, now).expect("valid");
            // A distinct key per iteration, as distinct deliveries would have: the cache
            // fills up to its capacity and then evicts the oldest entry on each insert.
            counter += 1;
            let mut key = *verified.replay_key().as_bytes();
            key[..8].copy_from_slice(&counter.to_le_bytes());
            black_box(guard.check_and_remember_sync(
                "installation-1",
                ReplayKey::from_bytes(key),
                expires,
                now,
            ))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = verify
}
criterion_main!(benches);
