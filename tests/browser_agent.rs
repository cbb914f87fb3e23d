//! The agent's screens in a real browser: headless Chromium (Debian's `chromium`) driven
//! by `tests/browser/agent.mjs` (playwright-core), against an agent started in-process
//! with two virtual lane boards and a replica loaded before start.
//!
//! The script asks for trucks by printing `@@arrive:<kind>` and waits for `ok` on its
//! standard input; `@@lights:<lane>` is answered with the lane's light. Screenshots go to
//! `target/screens/`; with `AEOGATE_UPDATE_SCREENS=1` they are also copied to
//! `docs/screens/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aeogate::bench::data;
use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use edge_agent::config::Config;
use edge_agent::console::{Role, add_user};
use edge_agent::store::Store;
use protocol::i18n::Lang;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
use protocol::schema::{
    Change, Consignment, DeclaredContainer, GateId, Party, PartyRole, SCHEMA_VERSION,
};
use protocol::seal::ESealId;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

const GATE: &str = "PORT1-G1";
const PASSWORD: &str = "gate-booth-password-1";
/// Whole browser session bound.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Container `j` of the data set, sealed with one e-seal, declared by two certified
/// operators.
fn consignment(j: u64, eseal: ESealId) -> Consignment {
    Consignment {
        v: SCHEMA_VERSION,
        id: format!("DECL-BROWSER-{j}"),
        containers: vec![DeclaredContainer {
            number: data::container(j).expect("container"),
            seals: Vec::new(),
            eseals: vec![eseal],
        }],
        parties: vec![
            Party {
                role: PartyRole::Importer,
                operator: Some(data::operator_id(0).expect("op")),
                name: "Operator 0 GmbH".into(),
            },
            Party {
                role: PartyRole::Carrier,
                operator: Some(data::operator_id(1).expect("op")),
                name: "Operator 1 GmbH".into(),
            },
        ],
        holds: Vec::new(),
        ports: vec![data::PORT.into()],
        as_of: jiff::Timestamp::now(),
    }
}

fn eseal(j: u64) -> ESealId {
    ESealId::parse(&format!("00A1-{:08X}", 0x1000 + j)).expect("e-seal id")
}

fn truck(j: u64, status: SealStatus) -> Truck {
    let mut epc = data::container(j)
        .expect("container")
        .to_string()
        .into_bytes();
    epc.push(0);
    let id = eseal(j);
    Truck {
        tags: vec![epc],
        eseals: vec![SealRead {
            manufacturer: id.manufacturer(),
            tag_id: id.tag_id(),
            status,
            battery: if status == SealStatus::Sealed {
                BatteryLevel::Ok
            } else {
                BatteryLevel::Low
            },
            sealed_at: Some(EpochMinutes(29_000_000)),
            opened_at: (status != SealStatus::Sealed).then_some(EpochMinutes(29_300_000)),
        }],
        dwell: Duration::from_millis(800),
    }
}

fn seed_store(path: &Path) {
    let store = Store::open(path, GateId::parse(GATE).expect("gate")).expect("store");
    let mut changes = vec![Change::UpsertMra { mra: data::mra() }];
    for i in 0..4 {
        changes.push(Change::UpsertOperator {
            record: data::operator(i).expect("operator"),
        });
    }
    for j in 0..4 {
        changes.push(Change::UpsertConsignment {
            consignment: consignment(j, eseal(j)),
        });
    }
    // Signed as of now, so the replica is fresh (freshness comes only from this time).
    let mut snapshot = data::batch(true, 0, changes);
    snapshot.as_of = jiff::Timestamp::now();
    store.apply_batch(&snapshot).expect("snapshot applies");
    for (name, role, lang) in [
        ("ana.officer", Role::Officer, Lang::En),
        ("sofia.oficial", Role::Officer, Lang::Es),
        ("joao.agente", Role::Officer, Lang::Pt),
        ("sam.supervisor", Role::Supervisor, Lang::En),
        ("terminal.ops", Role::Operator, Lang::En),
    ] {
        add_user(&store, name, PASSWORD, role, lang).expect("account");
    }
}

fn config(dir: &Path, boards: &[(&str, &VirtualBoard)]) -> Config {
    let mut t = format!("[gate]\nid = \"{GATE}\"\nport = \"{}\"\n\n", data::PORT);
    for (lane, _) in boards {
        t.push_str(&format!(
            "[[lanes]]\nid = \"{lane}\"\nname = \"Lane {lane}\"\nquiet_close = \"500ms\"\n[lanes.routes]\nfast = \"{lane} priority exit\"\nstandard = \"{lane} document check\"\ninspect = \"Inspection bay {lane}\"\n\n"
        ));
    }
    for (lane, b) in boards {
        t.push_str(&format!(
            "[[devices]]\nname = \"board-{lane}\"\nlane = \"{lane}\"\nkind = \"lane_board\"\npath = \"{}\"\n\n",
            b.tty_link().display()
        ));
    }
    t.push_str(&format!(
        "[store]\npath = \"{}\"\n\n[policy]\nstaleness_bound = \"1h\"\nrandom_rate_aeo = 0.000001\nrandom_rate_other = 0.000001\nrandom_key = \"browser-test-key\"\n\n[console]\nbind = \"127.0.0.1:0\"\n",
        dir.join("agent.redb").display()
    ));
    Config::from_toml_str(&t, "browser.toml").expect("valid config")
}

fn require_tools() {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js (apt-get install -y nodejs npm)"
    );
    assert!(
        root()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: run `npm ci --prefix tests/browser`"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: apt-get install -y chromium"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_console_and_operator_view_in_chromium() {
    require_tools();
    edge_agent::uplink::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let l1 = VirtualBoard::spawn(VirtualBoardConfig {
        lane: "L1".into(),
        seed: 1,
        ..VirtualBoardConfig::default()
    })
    .expect("board L1");
    let l2 = VirtualBoard::spawn(VirtualBoardConfig {
        lane: "L2".into(),
        seed: 2,
        ..VirtualBoardConfig::default()
    })
    .expect("board L2");
    seed_store(&dir.path().join("agent.redb"));
    let shutdown = CancellationToken::new();
    let agent = edge_agent::runtime::start(
        config(dir.path(), &[("L1", &l1), ("L2", &l2)]),
        shutdown.clone(),
    )
    .await
    .expect("agent starts");
    let base = format!("http://127.0.0.1:{}", agent.console_addr.port());
    // The boards' links come up before any truck is sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !agent.shared.device_health().iter().all(|d| d.up) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lane boards did not come up: {:?}",
            agent.shared.device_health()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let screens = root().join("target/screens");
    std::fs::create_dir_all(&screens).expect("screens dir");
    let mut child = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/agent.mjs"))
        .env("AGENT_URL", &base)
        .env("PASSWORD", PASSWORD)
        .env("SCREENS", &screens)
        .env("PROFILE_DIR", dir.path().join("chromium-profile"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut transcript = String::new();
    let mut next_truck = 0u64;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("node output") {
            transcript.push_str(&line);
            transcript.push('\n');
            if let Some(kind) = line.strip_prefix("@@arrive:") {
                let (board, status) = match kind {
                    "fast" => (&l1, SealStatus::Sealed),
                    "tampered" => (&l1, SealStatus::Tampered),
                    "l2" => (&l2, SealStatus::Sealed),
                    other => panic!("unknown truck kind {other}"),
                };
                board.arrive(truck(next_truck % 4, status));
                next_truck += 1;
                // Long enough for the e-seal reader's poll (every 1 s) to read the seal
                // before the truck leaves: a shorter stay sometimes left it unread.
                tokio::time::sleep(Duration::from_millis(2500)).await;
                board.leave();
                stdin.write_all(b"ok\n").await.expect("answer");
            } else if let Some(lane) = line.strip_prefix("@@lights:") {
                let light = if lane == "L2" {
                    l2.lights()
                } else {
                    l1.lights()
                };
                stdin
                    .write_all(format!("{light:?}\n").as_bytes())
                    .await
                    .expect("answer");
            }
        }
    };
    let finished = tokio::time::timeout(SCRIPT_LIMIT, run).await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
    }
    assert!(
        finished.is_ok(),
        "browser script timed out\n{transcript}\n{err}"
    );
    let ok = matches!(status, Ok(Ok(s)) if s.success());
    assert!(
        ok,
        "browser script failed: {status:?}\n--- stdout\n{transcript}\n--- stderr\n{err}"
    );

    if std::env::var("AEOGATE_UPDATE_SCREENS").is_ok_and(|v| v == "1") {
        let docs = root().join("docs/screens");
        std::fs::create_dir_all(&docs).expect("docs/screens");
        for e in std::fs::read_dir(&screens).expect("screens") {
            let p = e.expect("entry").path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
            {
                std::fs::copy(&p, docs.join(p.file_name().expect("name"))).expect("copy screen");
            }
        }
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
}
