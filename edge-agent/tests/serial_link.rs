//! The lane-board link driver over a real pty: the test plays the board on the master side,
//! the driver opens the slave through a symlink (as it would a `/dev/serial/by-id` path).

mod io_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_agent::sources::serial::{RETRY, SerialDevice, run_lane_board};
use edge_agent::sources::{AssemblerEvent, HealthReporter};
use protocol::link::{
    self, Barrier, BoardStatus, Frame, LaneCommand, Light, LinkDecoder, Message, TagRead,
};
use protocol::schema::{DeviceHealth, LaneId, ReadValue};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(5);

/// The board's end of a pty.
struct Board {
    master: SerialStream,
    _slave: SerialStream,
    decoder: LinkDecoder,
    seq: u16,
}

impl Board {
    /// A new pty; `link` is (re)pointed at its slave.
    fn plug(link: &Path) -> Board {
        let (master, slave) = io_support::pty_behind(link);
        Board {
            master,
            _slave: slave,
            decoder: LinkDecoder::new(),
            seq: 0,
        }
    }

    async fn send(&mut self, msg: Message) -> u16 {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send_seq(seq, msg).await;
        seq
    }

    async fn send_seq(&mut self, seq: u16, msg: Message) {
        let mut buf = [0u8; link::MAX_FRAME];
        let n = link::encode_frame(&Frame::new(seq, msg), &mut buf).expect("encode");
        self.master.write_all(&buf[..n]).await.expect("write");
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).await.expect("write");
    }

    /// The next intact frame from the agent.
    async fn recv(&mut self) -> Frame {
        let mut byte = [0u8; 1];
        tokio::time::timeout(STEP, async {
            loop {
                let n = self.master.read(&mut byte).await.expect("read");
                assert!(n > 0, "agent side closed");
                if let Some(Ok(f)) = self.decoder.push(byte[0]) {
                    return f;
                }
            }
        })
        .await
        .expect("a frame from the agent in time")
    }

    /// The next frame that is not an ack.
    async fn recv_command(&mut self) -> Frame {
        loop {
            let f = self.recv().await;
            if !matches!(f.msg, Message::Ack { .. }) {
                return f;
            }
        }
    }

    /// Frames until an `Ack { seq }` arrives.
    /// Reports a vehicle on loop `loop_id` and waits for the ack; returns the frame's seq.
    async fn arrival_acked(&mut self, loop_id: u8) -> u16 {
        let seq = self
            .send(Message::Presence {
                loop_id,
                present: true,
            })
            .await;
        self.expect_ack(seq).await;
        seq
    }

    async fn expect_ack(&mut self, seq: u16) {
        loop {
            if self.recv().await.msg == (Message::Ack { seq }) {
                return;
            }
        }
    }
}

fn heartbeat(uptime_ms: u32) -> Message {
    Message::Heartbeat(link::Heartbeat {
        uptime_ms,
        boot_id: 0xB007_0007,
        board_id: 7,
        fw_version: 0x0102,
        status: BoardStatus {
            link_ok: true,
            uhf_reader_ok: true,
            seal_reader_ok: false,
            light: Light::Red,
            barrier: Barrier::Lower,
            presence: 0,
            unacked: 0,
        },
    })
}

struct Agent {
    events: mpsc::Receiver<AssemblerEvent>,
    commands: mpsc::Sender<LaneCommand>,
    health: watch::Receiver<DeviceHealth>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_agent(path: PathBuf) -> Agent {
    let dev = SerialDevice {
        name: "board-1".into(),
        lane: LaneId::parse("L1").expect("lane"),
        path,
        baud: 115_200,
        silence_timeout: Duration::from_secs(2),
        reopen_backoff_max: Duration::from_millis(400),
    };
    let (ev_tx, events) = mpsc::channel(16);
    let (commands, cmd_rx) = mpsc::channel(4);
    let (reporter, health) = HealthReporter::new("board-1", Some(dev.lane.clone()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_lane_board(
        dev,
        ev_tx,
        cmd_rx,
        reporter,
        shutdown.clone(),
    ));
    Agent {
        events,
        commands,
        health,
        shutdown,
        task,
    }
}

async fn next_event(agent: &mut Agent) -> AssemblerEvent {
    tokio::time::timeout(STEP, agent.events.recv())
        .await
        .expect("an event in time")
        .expect("driver alive")
}

async fn wait_health(agent: &mut Agent, up: bool) -> DeviceHealth {
    tokio::time::timeout(STEP, agent.health.wait_for(|h| h.up == up))
        .await
        .expect("health change in time")
        .expect("reporter alive")
        .clone()
}

fn container_tag(seq_text: &[u8]) -> Message {
    let mut epc = heapless::Vec::new();
    epc.extend_from_slice(seq_text).expect("fits");
    epc.push(0).expect("fits");
    Message::TagRead(TagRead {
        antenna: 2,
        rssi: -48,
        pc: 0x3000,
        epc,
    })
}

#[tokio::test]
async fn survives_garbage_acks_and_dedupes_board_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("board");
    let mut board = Board::plug(&link);
    let mut agent = start_agent(link);

    // Noise first, including a delimiter-free run longer than any frame and stray zeros.
    board.raw(&[0x13; 300]).await;
    board.raw(&[0x00, 0xFF, 0x00, 0x42, 0x99, 0x00]).await;
    let hb = board.send(heartbeat(1000)).await;
    board.expect_ack(hb).await;
    let h = wait_health(&mut agent, true).await;
    assert!(h.detail.contains("board 7"), "{}", h.detail);
    assert!(
        h.detail.contains("e-seal reader not answering"),
        "{}",
        h.detail
    );

    let seq = board.arrival_acked(0).await;
    // The board did not see the ack and resends: acked again, acted on once.
    board
        .send_seq(
            seq,
            Message::Presence {
                loop_id: 0,
                present: true,
            },
        )
        .await;
    board.expect_ack(seq).await;
    let tag = board.send(container_tag(b"CSQU3054383")).await;
    board.expect_ack(tag).await;

    match next_event(&mut agent).await {
        AssemblerEvent::Presence {
            loop_id, present, ..
        } => assert!(loop_id == 0 && present),
        other => panic!("expected presence, got {other:?}"),
    }
    match next_event(&mut agent).await {
        AssemblerEvent::Read(r) => {
            assert!(
                matches!(r.value, ReadValue::Container { number } if number.as_str() == "CSQU3054383"),
                "{:?}",
                r.value
            );
            assert_eq!(
                (r.antenna, r.rssi, r.device.as_str()),
                (Some(2), Some(-48), "board-1")
            );
        }
        other => {
            panic!("expected the duplicate to be suppressed and a tag read next, got {other:?}")
        }
    }
    agent.shutdown.cancel();
    tokio::time::timeout(STEP, agent.task)
        .await
        .expect("stops")
        .expect("no panic");
}

#[tokio::test]
async fn resends_a_lane_command_until_the_board_acks_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("board");
    let mut board = Board::plug(&link);
    let agent = start_agent(link);
    let hb = board.send(heartbeat(1000)).await;
    board.expect_ack(hb).await;

    let cmd = LaneCommand {
        light: Light::Green,
        barrier: Barrier::Raise,
        route: 1,
        text: heapless::String::try_from("Lane 1 priority").expect("fits"),
    };
    agent
        .commands
        .send(cmd.clone())
        .await
        .expect("driver alive");
    let first = board.recv_command().await;
    assert_eq!(first.msg, Message::LaneCommand(cmd));
    let started = tokio::time::Instant::now();
    let again = board.recv_command().await;
    assert_eq!(again, first, "resent unchanged, same seq");
    assert!(
        started.elapsed() >= RETRY / 2,
        "resent after the retry period"
    );
    board.send(Message::Ack { seq: first.seq }).await;
    // The ack of this heartbeat comes back after the agent has read our ack, so any copy
    // of the command still in the pipe arrives before it.
    let hb = board.send(heartbeat(2000)).await;
    board.expect_ack(hb).await;
    // Once acked, nothing more is resent.
    let quiet = tokio::time::timeout(RETRY * 3, board.recv_command()).await;
    assert!(quiet.is_err(), "no resend after the ack: {quiet:?}");
    agent.shutdown.cancel();
}

#[tokio::test]
async fn reopens_after_hang_up_and_after_silence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("board");
    let mut board = Board::plug(&link);
    let mut agent = start_agent(link.clone());
    let hb = board.send(heartbeat(1000)).await;
    board.expect_ack(hb).await;
    wait_health(&mut agent, true).await;

    // Unplug: the board end goes away; the driver sees a hang-up and reports it.
    drop(board);
    let down = wait_health(&mut agent, false).await;
    assert!(
        down.detail.contains("hung up") || down.detail.contains("read failed"),
        "{}",
        down.detail
    );

    // Replug (a new pty behind the same symlink): the driver reopens by itself.
    let mut board = Board::plug(&link);
    let hb = board.send(heartbeat(10)).await;
    board.expect_ack(hb).await;
    wait_health(&mut agent, true).await;
    board.arrival_acked(1).await;
    assert!(matches!(
        next_event(&mut agent).await,
        AssemblerEvent::Presence { loop_id: 1, .. }
    ));

    // A board that stops talking (no heartbeats) is closed after the silence timeout.
    let down = wait_health(&mut agent, false).await;
    assert!(down.detail.contains("no valid frame"), "{}", down.detail);
    agent.shutdown.cancel();
}
