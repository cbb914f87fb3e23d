//! The `BB … 7E` UHF module driver over a real pty: the test plays the module.

use std::time::Duration;

use edge_agent::sources::serial::{SerialDevice, run_uhf_module};
use edge_agent::sources::{AssemblerEvent, HealthReporter};
use protocol::reader::uhf::{self, Command, FrameType, TagNotice, code};
use protocol::schema::{LaneId, ReadValue};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_serial::{SerialPort as _, SerialStream};
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(5);

/// Answers the driver's commands until `answer` is cleared: a power query with 20 dBm,
/// a multiple poll with one container tag behind a little line noise.
async fn module(mut master: SerialStream, answer: CancellationToken, polls: mpsc::Sender<Command>) {
    let mut parser = uhf::Parser::new();
    let mut buf = [0u8; 128];
    loop {
        let Ok(n) = master.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut commands = Vec::new();
        parser.push_slice(&buf[..n], |r| {
            if let Ok(f) = r
                && let Some(c) = Command::from_frame(&f)
            {
                commands.push(c);
            }
        });
        for c in commands {
            let _ = polls.try_send(c);
            if answer.is_cancelled() {
                continue;
            }
            let mut out = [0u8; uhf::MAX_FRAME];
            let n = match c {
                Command::GetTxPower => uhf::encode_frame(
                    FrameType::Response,
                    code::GET_TX_POWER,
                    &[0x07, 0xD0],
                    &mut out,
                ),
                Command::MultiPoll { .. } => {
                    let mut epc = heapless::Vec::new();
                    epc.extend_from_slice(b"CSQU3054383\0").expect("fits");
                    // 12 bytes = 6 words in PC bits 15..11.
                    TagNotice::with_crc(-61, 6 << 11, epc).encode(&mut out)
                }
                _ => continue,
            }
            .expect("encode");
            let _ = master.write_all(&[0xBB, 0x02, 0x22, 0x7E, 0x13]).await;
            if master.write_all(&out[..n]).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test]
async fn polls_the_module_reports_tags_and_reports_a_quiet_module_down() {
    let (master, slave) = SerialStream::pair().expect("pty");
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("uhf");
    std::os::unix::fs::symlink(slave.name().expect("slave path"), &link).expect("symlink");
    let answering = CancellationToken::new();
    let (poll_tx, mut polls) = mpsc::channel(64);
    tokio::spawn(module(master, answering.clone(), poll_tx));

    let lane = LaneId::parse("L2").expect("lane");
    let dev = SerialDevice {
        name: "uhf-l2".into(),
        lane: lane.clone(),
        path: link,
        baud: 115_200,
        silence_timeout: Duration::from_secs(1),
        reopen_backoff_max: Duration::from_millis(300),
    };
    let (tx, mut events) = mpsc::channel(16);
    let (reporter, mut health) = HealthReporter::new("uhf-l2", Some(lane));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uhf_module(dev, tx, reporter, shutdown.clone()));

    let ev = tokio::time::timeout(STEP, events.recv())
        .await
        .expect("a read in time")
        .expect("driver alive");
    match ev {
        AssemblerEvent::Read(r) => {
            assert!(
                matches!(r.value, ReadValue::Container { number } if number.as_str() == "CSQU3054383")
            );
            assert_eq!(r.rssi, Some(-61));
        }
        other => panic!("expected a read, got {other:?}"),
    }
    tokio::time::timeout(STEP, health.wait_for(|h| h.up))
        .await
        .expect("up")
        .expect("alive");
    let mut seen = Vec::new();
    while let Ok(c) = polls.try_recv() {
        seen.push(c);
    }
    assert!(seen.contains(&Command::GetTxPower), "{seen:?}");
    assert!(
        seen.iter()
            .any(|c| matches!(c, Command::MultiPoll { count } if *count > 0)),
        "{seen:?}"
    );

    // The module stops answering: the driver notices the silence and says so.
    answering.cancel();
    let down = tokio::time::timeout(STEP, health.wait_for(|h| !h.up))
        .await
        .expect("down")
        .expect("alive")
        .clone();
    assert!(down.detail.contains("no valid frame"), "{}", down.detail);
    drop(slave);
    shutdown.cancel();
    tokio::time::timeout(STEP, task)
        .await
        .expect("stops")
        .expect("no panic");
}
