//! The outbox relay against the REAL NATS JetStream server on 127.0.0.1:4222 (`.ci/run`
//! starts it). Each test uses its own stream and subject prefix, and deletes its stream.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use ivory_runtime::Store;
use ivory_runtime::outbox::{Relay, RelayConfig, RelayError};
use ivory_runtime::store::{Actor, AuditAction, AuditEvent};
use jiff::Timestamp;

use crate::support::env;

const NATS: &str = "nats://127.0.0.1:4222";

/// A unique stream and subject prefix for one test.
fn config(batch: u32) -> RelayConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    RelayConfig {
        nats_url: NATS.into(),
        stream: format!("IVORY_TEST_{tag}"),
        subject_prefix: format!("t{tag}."),
        batch,
        ..RelayConfig::default()
    }
}

async fn jetstream_client() -> jetstream::Context {
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS with JetStream runs on 127.0.0.1:4222 (see .ci/run)");
    jetstream::new(client)
}

/// Every message in the stream, in order: (subject, Nats-Msg-Id, payload).
async fn stream_messages(
    js: &jetstream::Context,
    stream: &str,
) -> Vec<(String, String, serde_json::Value)> {
    let mut stream = js.get_stream(stream).await.expect("stream");
    let info = stream.info().await.expect("info");
    let (first, last, count) = (
        info.state.first_sequence,
        info.state.last_sequence,
        info.state.messages,
    );
    let mut messages = Vec::new();
    if count == 0 {
        return messages;
    }
    for seq in first..=last {
        let message = stream.get_raw_message(seq).await.expect("message");
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .expect("a message id");
        let payload = serde_json::from_slice(&message.payload).expect("JSON");
        messages.push((message.subject.to_string(), id, payload));
    }
    messages
}

async fn delete_stream(js: &jetstream::Context, stream: &str) {
    let _ = js.delete_stream(stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_every_pending_event_once_in_order_and_marks_it_sent() {
    let env = env().await;
    write_events(&env.store, "acme", 250).await;
    let rows = env.store.audit_events("acme").await.expect("rows");
    let config = config(40);
    let js = jetstream_client().await;
    let relay = Relay::connect(env.store.clone(), config.clone())
        .await
        .expect("relay");

    let totals = relay.drain().await.expect("drain");
    assert_eq!(totals.sent, 250);
    assert_eq!(totals.duplicates, 0);
    assert_eq!(totals.batches, 7, "6 full batches of 40, then 10");
    assert_eq!(env.store.pending_audit_count().await.expect("count"), 0);

    let messages = stream_messages(&js, &config.stream).await;
    assert_eq!(messages.len(), 250);
    for ((subject, id, payload), row) in messages.iter().zip(&rows) {
        assert_eq!(id, &row.id, "in write order, message id = event id");
        assert_eq!(
            subject,
            &format!("{}{}", config.subject_prefix, row.event_type)
        );
        assert_eq!(payload, &row.payload, "the envelope as written");
    }

    // Nothing pending: nothing published.
    let again = relay.drain().await.expect("drain again");
    assert_eq!(again.sent, 0);
    assert_eq!(stream_messages(&js, &config.stream).await.len(), 250);

    // New events go out on the next drain.
    write_events(&env.store, "acme", 5).await;
    assert_eq!(relay.drain().await.expect("drain").sent, 5);
    let messages = stream_messages(&js, &config.stream).await;
    assert_eq!(messages.len(), 255);
    let unique: HashSet<&String> = messages.iter().map(|(_, id, _)| id).collect();
    assert_eq!(unique.len(), 255);
    delete_stream(&js, &config.stream).await;
}

/// A relay killed after the stream stored rows but before it marked them: the rows are
/// published again with the same message ids, and the stream drops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_published_but_not_marked_are_dropped_by_the_stream_when_republished() {
    let env = env().await;
    write_events(&env.store, "acme", 100).await;
    let config = config(30);
    let js = jetstream_client().await;
    let relay = Relay::connect(env.store.clone(), config.clone())
        .await
        .expect("relay (ensures the stream)");

    // What the killed relay did: published the first 60 rows, marked none.
    let published = env.store.pending_audit_events(60).await.expect("pending");
    for row in &published {
        js.send_publish(
            format!("{}{}", config.subject_prefix, row.event_type),
            PublishMessage::build()
                .payload(row.payload.clone().into())
                .message_id(&row.id),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    }
    assert_eq!(env.store.pending_audit_count().await.expect("count"), 100);

    let totals = relay.drain().await.expect("drain");
    assert_eq!(totals.sent, 100);
    assert_eq!(totals.duplicates, 60, "the stream already had 60 of them");
    assert_eq!(env.store.pending_audit_count().await.expect("count"), 0);
    let messages = stream_messages(&js, &config.stream).await;
    assert_eq!(messages.len(), 100, "each event exactly once");
    let unique: HashSet<&String> = messages.iter().map(|(_, id, _)| id).collect();
    assert_eq!(unique.len(), 100);
    delete_stream(&js, &config.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_is_a_clear_error_naming_the_address_and_rows_stay_pending() {
    let env = env().await;
    write_events(&env.store, "acme", 3).await;
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let address = format!("nats://127.0.0.1:{port}");
    let error = Relay::connect(
        env.store.clone(),
        RelayConfig {
            nats_url: address.clone(),
            connect_timeout: Duration::from_secs(2),
            ..config(10)
        },
    )
    .await
    .expect_err("nothing listens there");
    assert!(matches!(error, RelayError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot reach NATS at {address}")),
        "{message}"
    );
    assert!(error.is_transient());
    assert_eq!(env.store.pending_audit_count().await.expect("count"), 3);

    // Credentials in the URL never show.
    let error = Relay::connect(
        env.store.clone(),
        RelayConfig {
            nats_url: format!("nats://relay:s3cret-pass@127.0.0.1:{port}"),
            connect_timeout: Duration::from_secs(2),
            ..config(10)
        },
    )
    .await
    .expect_err("nothing listens there");
    assert!(!error.to_string().contains("s3cret-pass"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_that_name_holding_other_subjects_is_refused() {
    let env = env().await;
    let config = config(10);
    let js = jetstream_client().await;
    js.create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}other.>", config.subject_prefix)],
        ..Default::default()
    })
    .await
    .expect("stream");
    let error = Relay::connect(env.store.clone(), config.clone())
        .await
        .expect_err("wrong subjects");
    assert!(matches!(error, RelayError::Stream { .. }), "{error:?}");
    assert!(error.to_string().contains("audit.>"), "{error}");
    delete_stream(&js, &config.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_relays_events_written_later_and_stops_on_shutdown() {
    let env = env().await;
    write_events(&env.store, "acme", 10).await;
    let config = config(8);
    let js = jetstream_client().await;
    let store: Store = env.store.clone();
    let relay = Relay::connect(store.clone(), config.clone())
        .await
        .expect("relay");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        relay
            .run_until(Duration::from_millis(20), async {
                let _ = stopped.await;
            })
            .await
    });
    wait_for(|| async { store.pending_audit_count().await.expect("count") == 0 }).await;
    write_events(&env.store, "acme", 7).await;
    wait_for(|| async { store.pending_audit_count().await.expect("count") == 0 }).await;
    stop.send(()).expect("stop");
    let totals = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops promptly")
        .expect("join")
        .expect("no error");
    assert_eq!(totals.sent, 17);
    assert_eq!(stream_messages(&js, &config.stream).await.len(), 17);
    delete_stream(&js, &config.stream).await;
}

async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

/// Writes `n` events for `tenant` (as a read-only action would: each in its own transaction).
async fn write_events(store: &Store, tenant: &str, n: usize) -> Vec<String> {
    let agent = Actor::Agent("test".into());
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let event = AuditEvent::new(
            tenant,
            &agent,
            if i % 2 == 0 {
                AuditAction::Export
            } else {
                AuditAction::Update
            },
            "contact",
            Some(&format!("c_{i}")),
            Timestamp::now(),
        );
        store.record_audit_event(&event).await.expect("event");
        ids.push(event.id);
    }
    ids
}
