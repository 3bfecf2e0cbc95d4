//! `ivory outbox relay` end to end: the real binary, a real SQLite file, and the REAL NATS
//! JetStream server on 127.0.0.1:4222 (`.ci/run` starts it). Each test uses its own stream
//! and subject prefix, and deletes its stream.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ivory_runtime::Store;
use ivory_runtime::store::{Actor, AuditAction, AuditEvent};

const NATS: &str = "nats://127.0.0.1:4222";

struct Target {
    stream: String,
    prefix: String,
}

fn target() -> Target {
    let tag = uuid_like();
    Target {
        stream: format!("IVORY_CLI_TEST_{tag}"),
        prefix: format!("c{tag}."),
    }
}

/// A unique tag without a uuid dependency: time and pid.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{nanos}", std::process::id())
}

fn relay_command(db: &Path, target: &Target, nats: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ivory"));
    command
        .arg("--db")
        .arg(db)
        .args(["outbox", "relay", "--nats", nats])
        .args(["--stream", &target.stream])
        .args(["--subject-prefix", &target.prefix])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("join")
}

/// `n` events, written as the runtime writes them (each in its own transaction).
async fn seed(db: &Path, n: usize) -> Store {
    let store = Store::open(db.to_str().expect("utf-8"))
        .await
        .expect("store");
    let agent = Actor::Agent("test".into());
    for i in 0..n {
        let event = AuditEvent::new(
            "acme",
            &agent,
            AuditAction::Update,
            "contact",
            Some(&format!("c_{i}")),
            jiff::Timestamp::now(),
        );
        store.record_audit_event(&event).await.expect("event");
    }
    store
}

async fn jetstream_client() -> jetstream::Context {
    jetstream::new(
        async_nats::connect(NATS)
            .await
            .expect("NATS with JetStream runs on 127.0.0.1:4222 (see .ci/run)"),
    )
}

async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The `Nats-Msg-Id` of every message in the stream, in order.
async fn message_ids(js: &jetstream::Context, stream: &str) -> Vec<String> {
    let mut stream = js.get_stream(stream).await.expect("stream");
    let info = stream.info().await.expect("info").clone();
    let mut ids = Vec::new();
    if info.state.messages == 0 {
        return ids;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("message");
        ids.push(
            message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .expect("a message id"),
        );
    }
    ids
}

async fn sent_count(store: &Store) -> u64 {
    let all = store.audit_events("acme").await.expect("events").len() as u64;
    all - store.pending_audit_count().await.expect("pending")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_loses_nothing_and_duplicates_nothing() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let store = seed(&db, N).await;
    let target = target();
    let js = jetstream_client().await;

    let mut child = relay_command(&db, &target, NATS, &["--once", "--batch", "250"])
        .spawn()
        .expect("spawn");
    // Kill it -9 once part of the events are in the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_stream = message_count(&js, &target.stream).await;
        if in_stream >= 400 {
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            panic!("the relay finished before it could be killed ({in_stream} in the stream)");
        }
        assert!(Instant::now() < deadline, "the relay makes no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "killed, not finished");
    // Let the server store what the dead relay's socket still delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_stream = message_count(&js, &target.stream).await;
    let marked = sent_count(&store).await;
    eprintln!("killed: {in_stream} in the stream, {marked} marked sent");
    assert!(
        marked <= in_stream,
        "a row is marked only after the stream stored it"
    );
    assert!((in_stream as usize) < N, "killed mid-drain");

    let rerun = output(relay_command(
        &db,
        &target,
        NATS,
        &["--once", "--batch", "250"],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        rerun.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    // Exactly the rows published but not marked were dropped by the stream as duplicates.
    assert!(
        stdout.contains(&format!(
            "relayed {} audit event(s) to stream {} ({} already in the stream); 0 pending",
            N as u64 - marked,
            target.stream,
            in_stream - marked
        )),
        "{stdout}"
    );

    let ids = message_ids(&js, &target.stream).await;
    assert_eq!(ids.len(), N, "each event exactly once");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), N);
    let rows = store.audit_events("acme").await.expect("rows");
    let expected: Vec<&String> = rows.iter().map(|r| &r.id).collect();
    let got: Vec<&String> = ids.iter().collect();
    assert_eq!(got, expected, "in write order");
    assert_eq!(store.pending_audit_count().await.expect("pending"), 0);
    let _ = js.delete_stream(&target.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_exits_1_naming_the_address_and_rows_stay_pending() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let store = seed(&db, 4).await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let address = format!("nats://127.0.0.1:{port}");
    let out = output(relay_command(&db, &target(), &address, &["--once"])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot reach NATS at {address}")),
        "{stderr}"
    );
    assert_eq!(store.pending_audit_count().await.expect("pending"), 4);

    let bad = output(relay_command(
        &db,
        &target(),
        NATS,
        &["--once", "--batch", "0"],
    ))
    .await;
    assert_eq!(bad.status.code(), Some(2), "a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_once_it_polls_until_sigterm_then_exits_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let store = seed(&db, 20).await;
    let target = target();
    let js = jetstream_client().await;
    let child = relay_command(&db, &target, NATS, &["--poll-ms", "20"])
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let wait_until = |want: u64| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while store.pending_audit_count().await.expect("pending") != 0
                || sent_count(&store).await != want
            {
                assert!(Instant::now() < deadline, "not relayed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_until(20).await;
    // Written while it runs: picked up by the next poll.
    let agent = Actor::Agent("test".into());
    for i in 0..5 {
        let event = AuditEvent::new(
            "acme",
            &agent,
            AuditAction::Export,
            "contact",
            Some(&format!("late_{i}")),
            jiff::Timestamp::now(),
        );
        store.record_audit_event(&event).await.expect("event");
    }
    wait_until(25).await;
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("exits"))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("relayed 25 audit event(s)"), "{stdout}");
    assert_eq!(message_count(&js, &target.stream).await, 25);
    let _ = js.delete_stream(&target.stream).await;
}
