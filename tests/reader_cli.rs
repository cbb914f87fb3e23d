//! `aeogate reader llrp` as a user runs it: the binary on a loopback port, driven by a raw
//! LLRP client written with the codec (greeting, capabilities, a ROSpec on antenna 1, a
//! tag report of the `--tag` given on the command line), and its usage errors.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::llrp::{
    self, Check, ContentSelector, Message, ReaderEvent, ReportSpec, RoSpec, RoSpecOp,
};

const WAIT: Duration = Duration::from_secs(10);

/// Kills the reader on drop, so a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn next(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (llrp::Header, Message) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Check::Complete { len } =
            llrp::check(buf, llrp::DEFAULT_MAX_MESSAGE).expect("valid framing")
        {
            let frame: Vec<u8> = buf.drain(..len).collect();
            return llrp::decode(&frame).expect("the reader sends valid LLRP");
        }
        assert!(Instant::now() < deadline, "no message within {WAIT:?}");
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the reader closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(stream: &mut TcpStream, buf: &mut Vec<u8>, m: &Message, id: u32) -> Message {
    stream.write_all(&m.encode(1, id)).expect("write");
    loop {
        let (h, answer) = next(stream, buf);
        if h.id == id && !matches!(answer, Message::Keepalive | Message::RoAccessReport(_)) {
            return answer;
        }
    }
}

fn success(m: &Message) -> bool {
    match m {
        Message::Response { status, .. } => status.is_success(),
        Message::GetReaderCapabilitiesResponse { status, .. } => status.is_success(),
        _ => false,
    }
}

#[test]
fn reader_command_serves_the_tags_given_on_the_command_line() {
    let epc = "3074257BF7194E4000001A85";
    let mut child = Command::new(env!("CARGO_BIN_EXE_aeogate"))
        .args([
            "reader",
            "llrp",
            "--listen",
            "127.0.0.1:0",
            "--antennas",
            "2",
        ])
        .args(["--tag", &format!("1={epc}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("aeogate starts");
    let stdout = child.stdout.take().expect("stdout");
    let _running = Running(child);
    let mut first = String::new();
    // Kept open for the whole test: the reader goes on printing status lines.
    let mut lines = BufReader::new(stdout);
    lines
        .read_line(&mut first)
        .expect("the reader prints its address");
    let addr = first
        .trim()
        .strip_prefix("LLRP reader listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = Vec::new();
    let (_, hello) = next(&mut stream, &mut buf);
    assert!(
        matches!(&hello, Message::ReaderEventNotification(d)
            if d.events == vec![ReaderEvent::ConnectionAttempt { status: 0 }]),
        "{hello:?}"
    );
    let caps = request(
        &mut stream,
        &mut buf,
        &Message::GetReaderCapabilities { requested: 0 },
        1,
    );
    match &caps {
        Message::GetReaderCapabilitiesResponse { capabilities, .. } => {
            assert_eq!(capabilities.max_antennas, Some(2));
        }
        other => panic!("{other:?}"),
    }
    let report = ReportSpec {
        trigger: 1,
        n: 1,
        content: ContentSelector(ContentSelector::ANTENNA_ID),
    };
    let spec = RoSpec::gen2_inventory(7, vec![1], vec![], Some(report));
    // Starting before enabling is refused; in order, each step succeeds.
    let early = request(
        &mut stream,
        &mut buf,
        &Message::RoSpec {
            op: RoSpecOp::Start,
            id: 7,
        },
        2,
    );
    assert!(!success(&early), "START of an unknown ROSpec: {early:?}");
    let add = request(&mut stream, &mut buf, &Message::AddRoSpec(spec), 3);
    assert!(success(&add), "{add:?}");
    for (id, op) in [(4, RoSpecOp::Enable), (5, RoSpecOp::Start)] {
        let r = request(&mut stream, &mut buf, &Message::RoSpec { op, id: 7 }, id);
        assert!(success(&r), "{op:?}: {r:?}");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no tag report within {WAIT:?}");
        if let (_, Message::RoAccessReport(tags)) = next(&mut stream, &mut buf)
            && let Some(t) = tags.first()
        {
            assert_eq!(hex::encode_upper(&t.epc), epc);
            assert_eq!(t.antenna, Some(1));
            assert_eq!(t.peak_rssi, None, "only the selected fields are reported");
            break;
        }
    }
    drop(lines);
}

#[test]
fn reader_command_rejects_a_malformed_tag() {
    let out = Command::new(env!("CARGO_BIN_EXE_aeogate"))
        .args([
            "reader",
            "llrp",
            "--listen",
            "127.0.0.1:0",
            "--tag",
            "1=XYZ",
        ])
        .output()
        .expect("aeogate runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not hex"), "{err}");
}
