//! The agent's screens in a real browser: headless Chromium (Debian's `chromium`) driven
//! by `tests/browser/agent.mjs` (playwright-core), against an agent started in-process
//! with two virtual lane boards and a replica loaded before start.
//!
//! The script asks for trucks by printing `@@arrive:<kind>` and waits for `ok` on its
//! standard input; `@@lights:<lane>` is answered with the lane's light; `@@degrade:<what>`
//! (`central`, `stale`, `journal`) is answered once the gate is in that condition for
//! real. Screenshots go to `target/screens/`; with `AEOGATE_UPDATE_SCREENS=1` they are
//! also copied to `docs/screens/`.
//!
//! Two runs: `agent.mjs` (the screens' behaviour) and `a11y-agent.mjs` (axe-core over every
//! screen in its states and languages, the keyboard walk of a shift, booth layouts at
//! 1280×720 and 768 px) against an agent whose central is unreachable and whose replica
//! goes stale during the run; and `a11y-selftest.mjs`, which shows that the accessibility
//! check fails a run on a page with a serious violation.

#[path = "common/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aeogate::bench::data;
use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use edge_agent::config::Config;
use edge_agent::console::view::GateStatus;
use edge_agent::console::{Role, add_user};
use edge_agent::store::Store;
use protocol::i18n::Lang;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
use protocol::schema::{
    Change, Consignment, ContactPoint, DeclaredContainer, GateId, Party, PartyRole, SCHEMA_VERSION,
};
use protocol::seal::ESealId;
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
        let mut record = data::operator(i).expect("operator");
        // Both declared parties have a customs contact point to call and to write to.
        if i < 2 {
            record.contact_point = Some(ContactPoint {
                name: format!("Customs contact point {i}"),
                phone: Some(format!("+49 40 555 01{i:02}")),
                email: Some(format!("aeo-contact{i}@operator{i}.example")),
            });
        }
        changes.push(Change::UpsertOperator { record });
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
        ("sara.supervisora", Role::Supervisor, Lang::Es),
        ("paulo.supervisor", Role::Supervisor, Lang::Pt),
        ("terminal.ops", Role::Operator, Lang::En),
    ] {
        add_user(&store, name, PASSWORD, role, lang).expect("account");
    }
}

/// What the agent's configuration varies in between the two runs.
struct Setup {
    /// Policy's staleness bound (humantime).
    staleness: &'static str,
    /// A central URL (nothing listens there), or none.
    central: Option<String>,
}

const PLAIN: Setup = Setup {
    staleness: "1h",
    central: None,
};

fn config(dir: &Path, boards: &[(&str, &VirtualBoard)], setup: &Setup) -> Config {
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
        "[store]\npath = \"{}\"\n\n[policy]\nstaleness_bound = \"{}\"\nrandom_rate_aeo = 0.000001\nrandom_rate_other = 0.000001\nrandom_key = \"browser-test-key\"\n\n[console]\nbind = \"127.0.0.1:0\"\n",
        dir.join("agent.redb").display(),
        setup.staleness,
    ));
    if let Some(url) = &setup.central {
        // A pinned key that signs nothing here: the agent never reaches central.
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        t.push_str(&format!(
            "\n[central]\nurl = \"{url}\"\ntoken = \"browser-test-token\"\nheartbeat_every = \"1s\"\n[[central.registry_keys]]\nkey_id = \"unused\"\npublic_key = \"{}\"\n",
            hex::encode(key.to_bytes())
        ));
    }
    Config::from_toml_str(&t, "browser.toml").expect("valid config")
}

fn require_tools() {
    browser::require_browser(&root());
}

/// A running agent with two virtual lane boards, and the answers to a script's requests.
struct Rig {
    dir: tempfile::TempDir,
    l1: VirtualBoard,
    l2: VirtualBoard,
    agent: edge_agent::runtime::AgentHandle,
    shutdown: CancellationToken,
    next_truck: u64,
}

impl Rig {
    async fn start(setup: &Setup) -> Self {
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
            config(dir.path(), &[("L1", &l1), ("L2", &l2)], setup),
            shutdown.clone(),
        )
        .await
        .expect("agent starts");
        // The boards' links come up before any truck is sent.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !agent
            .shared
            .device_health()
            .iter()
            .filter(|d| d.device.starts_with("board-"))
            .all(|d| d.up)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lane boards did not come up: {:?}",
                agent.shared.device_health()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            dir,
            l1,
            l2,
            agent,
            shutdown,
            next_truck: 0,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.agent.console_addr.port())
    }

    /// Waits (bounded) until `cond` holds of the gate's status.
    async fn until(&self, what: &str, limit: Duration, cond: impl Fn(&GateStatus) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let st = edge_agent::console::view::gate_status(&self.agent.shared);
            if cond(&st) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate did not reach '{what}' within {limit:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The answer to one request line of a script, or `None` for an ordinary line.
    async fn answer(&mut self, line: &str) -> Option<String> {
        if let Some(kind) = line.strip_prefix("@@arrive:") {
            // Containers 0..4 are declared; 4.. are not (no advance data: STANDARD).
            let (board, j, status) = match kind {
                "fast" => (&self.l1, self.next_truck % 4, SealStatus::Sealed),
                "tampered" => (&self.l1, self.next_truck % 4, SealStatus::Tampered),
                "undeclared" => (&self.l1, 4 + self.next_truck, SealStatus::Sealed),
                "l2" => (&self.l2, self.next_truck % 4, SealStatus::Sealed),
                other => panic!("unknown truck kind {other}"),
            };
            board.arrive(truck(j, status));
            self.next_truck += 1;
            // Long enough for the e-seal reader's poll (every 1 s) to read the seal
            // before the truck leaves: a shorter stay sometimes left it unread.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            board.leave();
            return Some("ok".into());
        }
        if let Some(lane) = line.strip_prefix("@@lights:") {
            let light = if lane == "L2" {
                self.l2.lights()
            } else {
                self.l1.lights()
            };
            return Some(format!("{light:?}"));
        }
        if let Some(what) = line.strip_prefix("@@degrade:") {
            match what {
                // Nothing listens at central's address: once the oldest unacknowledged
                // entry is older than the console's limit, central counts as unreachable.
                "central" => {
                    self.until("central unreachable", Duration::from_secs(90), |st| {
                        st.central_down
                    })
                    .await;
                }
                // The replica was loaded at start; no central refreshes it.
                "stale" => {
                    self.until("replica stale", Duration::from_secs(200), |st| {
                        st.replica.stale
                    })
                    .await;
                }
                // The disk refuses journal writes; the next truck raises the alarm.
                "journal" => {
                    self.agent.shared.store.refuse_journal_writes(true);
                    return Some("ok".into());
                }
                // The gate's clock measured 10 s ahead of central's (a sample as the
                // uplink would take it; tests/clock_trust.rs does it under libfaketime).
                "clock" => {
                    self.agent.shared.clock.add(edge_agent::clock::Sample {
                        offset: jiff::SignedDuration::from_secs(10),
                        delay: jiff::SignedDuration::from_millis(3),
                        at: jiff::Timestamp::now(),
                    });
                    return Some("ok".into());
                }
                "journal-alarm" => {
                    self.until("journal alarm", Duration::from_secs(30), |st| {
                        st.devices.iter().any(|d| d.device == "journal" && !d.up)
                    })
                    .await;
                }
                other => panic!("unknown condition {other}"),
            }
            return Some("ok".into());
        }
        None
    }

    /// Runs `script` with node, answering its requests, and fails with its transcript.
    async fn run(&mut self, script: &str, screens: &Path, limit: Duration) {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(root().join("tests/browser").join(script))
            .env("AGENT_URL", self.base())
            .env("PASSWORD", PASSWORD)
            .env("SCREENS", screens)
            .env("PROFILE_DIR", self.dir.path().join("chromium-profile"));
        browser::run_script(cmd, script, limit, async |line: &str| {
            self.answer(line).await
        })
        .await
        .assert_passed();
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.agent.join).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_console_and_operator_view_in_chromium() {
    let mut rig = Rig::start(&PLAIN).await;
    let screens = browser::screens_dir(&root());
    rig.run("agent.mjs", &screens, SCRIPT_LIMIT).await;
    browser::update_docs(&root(), &screens, "agent-");
    rig.stop().await;
}

/// Every agent screen under axe-core in English, Spanish and Portuguese, in its states
/// (FAST, STANDARD, INSPECT; a form with an error; the override form open; central
/// unreachable, replica stale, journal alarm), the keyboard walk of an officer's shift,
/// and the booth layouts at 1280×720 and 768 px wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_screens_are_accessible_keyboard_operable_and_readable_in_chromium() {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut rig = Rig::start(&Setup {
        staleness: "150s",
        central: Some(format!("http://127.0.0.1:{closed}")),
    })
    .await;
    let screens = browser::screens_dir(&root());
    rig.run("a11y-agent.mjs", &screens, Duration::from_secs(480))
        .await;
    browser::update_docs(&root(), &screens, "booth-");
    rig.stop().await;
}

/// The accessibility check the screens go through fails its run on a serious violation: a
/// clean page passes it, a page with 2:1 contrast text, a select and a button without a
/// name makes the script end with exit code 1, naming each rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accessibility_check_fails_a_run_on_a_serious_violation() {
    let chromium = browser::require_browser(&root());
    let script = "a11y-selftest.mjs";
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root().join("tests/browser").join(script))
        .env("CHROMIUM", chromium);
    let run = browser::run_script(cmd, script, Duration::from_secs(60), async |_: &str| None).await;
    run.assert_failed_with(
        1,
        &[
            "serious or critical accessibility violation(s)",
            "page with known violations [en] serious color-contrast",
            "page with known violations [en] critical select-name",
            "page with known violations [en] critical button-name",
        ],
    );
    assert!(
        run.transcript()
            .contains("ok - clean page: no serious or critical violation"),
        "the clean page passed first: {}",
        run.transcript()
    );
}
