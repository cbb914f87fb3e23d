//! The agent's journal writer on a real redb file: concurrent callers are committed in
//! groups, each gets its own entries only once they are stored, and a refusing journal
//! fails every caller of the group.

mod support;

use std::sync::Arc;
use std::time::Duration;

use edge_agent::journal::JournalWriter;
use edge_agent::readlog::ReadLog;
use edge_agent::store::{JournalError, Store};
use protocol::schema::{EventBody, GateId};
use support::now;
use tokio::task::JoinHandle;

fn alert(n: usize) -> EventBody {
    EventBody::IntegrityAlert {
        what: "test".into(),
        detail: format!("alert {n}"),
    }
}

/// Polls `fut` once: its requests are queued (a send to a queue with room completes in
/// one poll), its answers not yet awaited.
async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = fut => Some(out),
        () = std::future::ready(()) => None,
    }
}

/// Runs `together` while the writer is inside a commit window of its own: `first` is
/// queued and taken by the writer, which then waits for the store's write transaction
/// (held here); `together` queues its requests meanwhile, so the writer takes them all in
/// its next window. Returns both outputs and the commits made from the release on.
async fn queued_behind<A, B>(
    store: &Store,
    writer: &JournalWriter,
    first: A,
    together: B,
) -> (A::Output, B::Output, u64)
where
    A: std::future::Future,
    B: std::future::Future,
{
    let held = store.database().begin_write().expect("write transaction");
    let mut first = std::pin::pin!(first);
    assert!(
        poll_once(&mut first).await.is_none(),
        "answered before its commit"
    );
    support::eventually(
        "the writer takes the first request",
        Duration::from_secs(10),
        || writer.queued() == 0,
    )
    .await;
    let mut together = std::pin::pin!(together);
    assert!(
        poll_once(&mut together).await.is_none(),
        "answered before its commit"
    );
    assert!(writer.queued() > 0, "queued behind the first");
    let before = writer.commits();
    drop(held);
    let (a, b) = tokio::join!(first, together);
    (a, b, writer.commits() - before)
}

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(
        &dir.path().join("agent.redb"),
        GateId::parse("G1").expect("gate"),
    )
    .expect("store")
}

/// A store in `dir` and its journal writer, started.
fn started(dir: &tempfile::TempDir) -> (Store, JournalWriter, JoinHandle<()>) {
    let store = store(dir);
    let (writer, task) = JournalWriter::start(store.clone());
    (store, writer, task)
}

/// A writer with a read log sharing it, over a journal that refuses writes.
fn refusing_with_read_log(dir: &tempfile::TempDir) -> (Store, JournalWriter, ReadLog) {
    let (store, writer, _task) = started(dir);
    let log = ReadLog::sharing_writer(&writer);
    store.refuse_journal_writes(true);
    (store, writer, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_grouped_and_each_caller_gets_its_own_stored_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, task) = started(&dir);
    let writer = Arc::new(writer);
    let callers = 200usize;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..callers {
        let w = writer.clone();
        let s = store.clone();
        set.spawn(async move {
            let entries = w
                .append(vec![alert(2 * i), alert(2 * i + 1)], now())
                .await
                .expect("append");
            // Answered only after the commit: the entries are readable now.
            for e in &entries {
                assert_eq!(s.entry(e.seq).expect("read").as_ref(), Some(e));
            }
            (i, entries)
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = set.join_next().await {
        let (i, entries) = done.expect("task");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1].seq,
            entries[0].seq + 1,
            "a caller's records stay together"
        );
        let EventBody::IntegrityAlert { detail, .. } = &entries[0].body else {
            panic!("unexpected body");
        };
        assert_eq!(detail, &format!("alert {}", 2 * i));
        seen.extend(entries.iter().map(|e| e.seq));
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=2 * callers as u64).collect::<Vec<_>>());
    assert_eq!(store.verify_chain().expect("chain"), 2 * callers as u64);
    assert!(
        writer.commits() < callers as u64,
        "{} commits for {callers} concurrent callers: nothing was grouped",
        writer.commits()
    );
    writer.close();
    task.await.expect("writer ends after close");
    // After close, appends still work (one commit each).
    let late = writer
        .append(vec![alert(9_999)], now())
        .await
        .expect("late");
    assert_eq!(late[0].seq, 2 * callers as u64 + 1);
}

#[tokio::test]
async fn a_refusing_journal_fails_every_caller_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, _task) = started(&dir);
    store.refuse_journal_writes(true);
    let (a, b) = tokio::join!(
        writer.append(vec![alert(1)], now()),
        writer.append(vec![alert(2)], now())
    );
    assert!(matches!(a, Err(JournalError::Refused)), "{a:?}");
    assert!(matches!(b, Err(JournalError::Refused)), "{b:?}");
    assert_eq!(store.journal_head(), 0);
    store.refuse_journal_writes(false);
    let ok = writer.append(vec![alert(3)], now()).await.expect("append");
    assert_eq!(ok[0].seq, 1);
}

fn presence(lane: &str, present: bool) -> edge_agent::assembler::AssemblerEvent {
    edge_agent::assembler::AssemblerEvent::Presence {
        lane: protocol::schema::LaneId::parse(lane).expect("lane"),
        loop_id: 0,
        present,
        at: now(),
    }
}

#[tokio::test]
async fn a_read_log_sharing_the_writer_commits_reads_and_records_queued_together_in_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, task) = started(&dir);
    let log = ReadLog::sharing_writer(&writer);
    // The first arrival is logged on its own; its departure and the record that accounts
    // for the arrival are queued together.
    let arrived = presence("L1", true);
    log.log(std::slice::from_ref(&arrived)).await.expect("log");
    assert_eq!(writer.commits(), 1);
    let departed = presence("L1", false);
    let (first, (logged, journaled), commits) = queued_behind(
        &store,
        &writer,
        writer.append(vec![alert(0)], now()),
        async {
            tokio::join!(
                log.log(std::slice::from_ref(&departed)),
                writer.append_consuming(
                    vec![alert(1)],
                    now(),
                    vec![edge_agent::readlog::encode(&arrived)]
                )
            )
        },
    )
    .await;
    first.expect("append");
    logged.expect("log");
    let entries = journaled.expect("append");
    assert_eq!(
        commits, 2,
        "the first request's commit, then one for the read and the record"
    );
    assert_eq!(
        store.entry(entries[0].seq).expect("read").as_ref(),
        Some(&entries[0])
    );
    let left = ReadLog::replay(&store).expect("replay");
    assert_eq!(
        left,
        vec![departed],
        "the departure is logged, the arrival consumed"
    );
    log.close();
    writer.close();
    task.await
        .expect("the writer ends once the journal and the read log are closed");
}

#[tokio::test]
async fn reads_are_logged_while_the_journal_refuses_writes_in_the_same_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, log) = refusing_with_read_log(&dir);
    let arrived = [presence("L1", true)];
    // The first request is a read: a refused append would not wait for the transaction.
    let (first, (logged, journaled), commits) =
        queued_behind(&store, &writer, log.log(&[presence("L2", true)]), async {
            tokio::join!(log.log(&arrived), writer.append(vec![alert(1)], now()))
        })
        .await;
    first.expect("the read log takes the first read");
    logged.expect("the read log takes the read");
    assert!(
        matches!(journaled, Err(JournalError::Refused)),
        "{journaled:?}"
    );
    assert_eq!(store.journal_head(), 0);
    assert_eq!(store.logged_reads().expect("read log").len(), 2);
    assert_eq!(commits, 2, "the first read's commit, then one for both");
}

#[tokio::test]
async fn the_acknowledged_cursor_moves_in_the_commit_of_the_appends_queued_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, task) = started(&dir);
    writer
        .append(vec![alert(1), alert(2), alert(3)], now())
        .await
        .expect("append");
    assert_eq!(writer.commits(), 1);
    let (first, (acked, appended, further), commits) = queued_behind(
        &store,
        &writer,
        writer.append(vec![alert(4)], now()),
        async {
            tokio::join!(
                writer.set_acked(2),
                writer.append(vec![alert(5)], now()),
                writer.set_acked(1)
            )
        },
    )
    .await;
    assert_eq!(first.expect("append")[0].seq, 4);
    acked.expect("ack");
    further.expect("a lower cursor is ignored");
    assert_eq!(appended.expect("append")[0].seq, 5);
    assert_eq!(
        commits, 2,
        "the first append's commit, then one for the cursor and the append"
    );
    assert_eq!(store.acked_seq(), 2);
    assert!(matches!(
        writer.set_acked(9).await,
        Err(JournalError::AckBeyondHead { seq: 9, head: 5 })
    ));
    assert_eq!(store.acked_seq(), 2);
    // Durable: a reopened store has the cursor.
    drop(writer);
    task.await.expect("the writer ends");
    drop(store);
    let reopened = Store::open(
        &dir.path().join("agent.redb"),
        GateId::parse("G1").expect("gate"),
    );
    assert_eq!(reopened.expect("reopen").acked_seq(), 2);
}

#[tokio::test]
async fn appends_the_journal_refuses_in_one_window_get_their_own_bodies_and_events_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, log) = refusing_with_read_log(&dir);
    let events = |lane: &str| {
        vec![
            edge_agent::readlog::encode(&presence(lane, true)),
            edge_agent::readlog::encode(&presence(lane, false)),
        ]
    };
    let (first, (a, b), commits) =
        queued_behind(&store, &writer, log.log(&[presence("L9", true)]), async {
            tokio::join!(
                writer.append_returning(vec![alert(1), alert(2)], now(), events("L1")),
                writer.append_returning(vec![alert(3)], now(), events("L2")),
            )
        })
        .await;
    first.expect("the read log takes the read");
    assert_eq!(commits, 2, "both appends were refused in one window");
    let a = a.expect_err("refused");
    let b = b.expect_err("refused");
    assert!(matches!(a.error, JournalError::Refused), "{:?}", a.error);
    assert_eq!(a.bodies, vec![alert(1), alert(2)]);
    assert_eq!(a.consumed, events("L1"));
    assert_eq!(b.bodies, vec![alert(3)]);
    assert_eq!(b.consumed, events("L2"));
    assert_eq!(store.journal_head(), 0);
}
