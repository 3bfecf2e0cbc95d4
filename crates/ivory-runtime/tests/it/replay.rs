//! The persisted webhook replay cache, through the SDK's verifier: what one process accepted,
//! another (or the same after a restart) refuses as a replay inside the window.

use std::sync::Arc;

use ivory_runtime::Store;
use ivory_sdk::webhook::{Delivery, Freshness, Rejection, ReplayGuard, Scheme, Verifier};
use jiff::{SignedDuration, Timestamp};

use crate::support::env;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + seconds).expect("time")
}

#[tokio::test]
async fn a_delivery_accepted_once_is_a_replay_after_a_restart() {
    let env = env().await;
    let verifier =
        Verifier::new(Scheme::Stripe, "whsec_test_ivory_fake_secret_0000").expect("verifier");
    let delivery = verifier
        .sign(
            Delivery::new(
                Default::default(),
                &br#"{"id":"evt_1","type":"invoice.paid"}"#[..],
            ),
            at(0),
        )
        .expect("signed");

    let verified = verifier.verify_at(&delivery, at(1)).expect("authentic");
    verified
        .remember(&env.store, "inst_a", at(1))
        .await
        .expect("first time: fresh");

    // Another process on the same database file.
    let reopened = Store::open(&env.location).await.expect("reopen");
    let again = verifier
        .verify_at(&delivery, at(2))
        .expect("still authentic");
    let refused = again.remember(&reopened, "inst_a", at(2)).await;
    assert!(matches!(refused, Err(Rejection::Replayed)), "{refused:?}");

    // Another installation has its own cache.
    let other = verifier.verify_at(&delivery, at(3)).expect("authentic");
    other
        .remember(&reopened, "inst_b", at(3))
        .await
        .expect("fresh for inst_b");
}

#[tokio::test]
async fn entries_expire_with_their_window_and_can_be_pruned() {
    let env = env().await;
    let key = ivory_sdk::webhook::ReplayKey::from_bytes([7; 32]);
    let expires = at(300);
    let check = |now| env.store.check_and_remember("inst", key, expires, now);
    assert_eq!(check(at(0)).await.expect("ok"), Freshness::Fresh);
    assert_eq!(check(at(299)).await.expect("ok"), Freshness::Replayed);
    // After the window the same key is fresh again (it could not pass the time check anyway).
    let later = at(300)
        .checked_add(SignedDuration::from_secs(1))
        .expect("t");
    assert_eq!(
        env.store
            .check_and_remember("inst", key, at(900), later)
            .await
            .expect("ok"),
        Freshness::Fresh
    );
    assert_eq!(env.store.prune_replays(at(899)).await.expect("prune"), 0);
    assert_eq!(env.store.prune_replays(at(900)).await.expect("prune"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_key_are_fresh_exactly_once() {
    let env = env().await;
    let store = Arc::new(env.store.clone());
    let key = ivory_sdk::webhook::ReplayKey::from_bytes([9; 32]);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.check_and_remember("inst", key, at(300), at(0)).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        if task.await.expect("join").expect("ok") == Freshness::Fresh {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
}
