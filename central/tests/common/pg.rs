//! A PostgreSQL cluster of the test's own: `initdb` into a temporary folder, a free
//! loopback port, run as an unprivileged user when the test runs as root (PostgreSQL
//! refuses root), stopped by its PID when dropped.
//!
//! Needs Debian's `postgresql` package (`scripts/test` installs it); the binaries are
//! looked up under `/usr/lib/postgresql/<version>/bin`, newest first.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; `url()` names its `postgres` database.
pub struct PgCluster {
    dir: tempfile::TempDir,
    /// `None` while stopped ([`PgCluster::stop`]).
    child: Option<Child>,
    port: u16,
    durable: bool,
    starts: usize,
    /// Further `-c name=value` settings (TLS).
    settings: Vec<String>,
}

fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("PostgreSQL is not installed (/usr/lib/postgresql); scripts/test installs it")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/<version>/bin/postgres")
        .1
}

/// The uid and gid to run PostgreSQL as: `nobody` when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    let id = |arg: &str, user: Option<&str>| -> u32 {
        let mut c = Command::new("id");
        c.arg(arg);
        if let Some(u) = user {
            c.arg(u);
        }
        let out = c.output().expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u", None) == 0).then(|| (id("-u", Some("nobody")), id("-g", Some("nobody"))))
}

/// A temporary folder the user PostgreSQL runs as ([`run_as`]) owns, and that user.
fn owned_tempdir() -> (tempfile::TempDir, Option<(u32, u32)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = run_as();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown tempdir");
    }
    (dir, user)
}

/// Runs the PostgreSQL tool `what` as `user`; panics with its output when it fails.
fn run_tool(mut cmd: Command, user: Option<(u32, u32)>, what: &str) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The blocking client runs a runtime of its own, which tokio refuses on a thread that
/// runs one (an async test): such calls go to a thread of their own.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("client thread"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl PgCluster {
    /// Initialises and starts a cluster that trades durability for speed (no fsync);
    /// panics with PostgreSQL's output when it cannot.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A started cluster (as [`PgCluster::start`]) with a new, empty database `central`,
    /// and that database's URL.
    pub fn with_central() -> (Self, String) {
        let cluster = Self::start();
        let url = cluster.create_database("central");
        (cluster, url)
    }

    /// As [`PgCluster::start`]; `durable`: PostgreSQL's defaults (fsync, synchronous
    /// commit), for measurements.
    pub fn start_with(durable: bool) -> Self {
        let (dir, user) = owned_tempdir();
        let mut init = Command::new(bin_dir().join("initdb"));
        init.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg("-D")
        .arg(dir.path().join("data"));
        run_tool(init, user, "initdb");
        Self::started_in(dir, durable)
            .unwrap_or_else(|log| panic!("PostgreSQL did not start: {log}"))
    }

    /// A cluster over the data folder in `dir`, started on a free port. The port is free
    /// when asked; another process may take it before PostgreSQL binds it, so a start that
    /// fails is retried on a new port (bounded). The error is PostgreSQL's last log.
    fn started_in(dir: tempfile::TempDir, durable: bool) -> Result<Self, String> {
        let mut cluster = Self {
            dir,
            child: None,
            port: 0,
            durable,
            starts: 0,
            settings: Vec::new(),
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match cluster.spawn(free_port()) {
                Ok(()) => return Ok(cluster),
                Err(log) => last_log = log,
            }
        }
        Err(last_log)
    }

    /// Starts `postgres` on `port` over the existing data folder; on failure, its log.
    fn spawn(&mut self, port: u16) -> Result<(), String> {
        let bin = bin_dir();
        let data = self.dir.path().join("data");
        let user = run_as();
        let as_user = |c: &mut Command| {
            if let Some((uid, gid)) = user {
                c.uid(uid).gid(gid);
            }
        };
        let dir = &self.dir;
        let durable = self.durable;
        self.starts += 1;
        {
            let log = dir.path().join(format!("pg-{port}-{}.log", self.starts));
            let log_file = std::fs::File::create(&log).expect("log file");
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown log");
            }
            let mut c = Command::new(bin.join("postgres"));
            c.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file.try_clone().expect("log clone"));
            for setting in &self.settings {
                c.arg("-c").arg(setting);
            }
            if !durable {
                // The backend's transactions are unchanged; only the disk flushes go.
                c.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                    .args(["-c", "full_page_writes=off"]);
            }
            as_user(&mut c);
            let mut child = c.spawn().expect("spawn postgres");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Self::accepts(port) {
                    self.child = Some(child);
                    self.port = port;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    }

    /// Stops the server, turns TLS on with this certificate and key (PEM), and starts it
    /// again on the same port. Clients may still connect without TLS.
    pub fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        let cert = self.dir.path().join("server.crt");
        let key = self.dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).expect("write server.crt");
        std::fs::write(&key, key_pem).expect("write server.key");
        // PostgreSQL refuses a key others can read, and reads both as its own user.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        if let Some((uid, gid)) = run_as() {
            for f in [&cert, &key] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown");
            }
        }
        self.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
        ];
        self.stop();
        self.restart();
    }

    /// Makes this cluster a synchronous primary and returns its standby: a base backup
    /// (`pg_basebackup -R`, streaming) started on a port of its own, then named in the
    /// primary's `synchronous_standby_names`, so that from then on every commit the
    /// primary reports has reached the standby. The primary must have been started
    /// durable ([`PgCluster::start_with`]): otherwise its `synchronous_commit=off` does
    /// not wait for the standby.
    pub fn sync_standby(&mut self) -> PgCluster {
        assert!(
            self.durable,
            "a synchronous primary needs synchronous_commit on"
        );
        let (dir, user) = owned_tempdir();
        let mut backup = Command::new(bin_dir().join("pg_basebackup"));
        backup
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "--no-sync"])
            // An immediate checkpoint to start from (the default spreads it over minutes).
            .args(["-c", "fast"])
            .arg("-D")
            .arg(dir.path().join("data"));
        run_tool(backup, user, "pg_basebackup");
        let standby = Self::started_in(dir, true)
            .unwrap_or_else(|log| panic!("the standby did not start: {log}"));
        let primary = self.url();
        off_runtime(|| {
            let mut c = postgres::Client::connect(&primary, postgres::NoTls).expect("connect");
            // One statement a call: ALTER SYSTEM refuses an implicit transaction block.
            c.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                .expect("synchronous_standby_names");
            c.batch_execute("SELECT pg_reload_conf()")
                .expect("pg_reload_conf");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let sync = c
                    .query(
                        "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
                        &[],
                    )
                    .expect("pg_stat_replication");
                if !sync.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the standby did not become synchronous in 30 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        standby
    }

    /// Promotes this standby to a primary (`pg_promote`), returning once it takes writes.
    pub fn promote(&self) {
        let url = self.url();
        off_runtime(|| {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            let row = c
                .query_one("SELECT pg_promote(true, 60)", &[])
                .expect("pg_promote");
            assert!(
                row.get::<_, bool>(0),
                "the standby was not promoted in 60 s"
            );
        });
    }

    /// SIGKILL (a lost machine): no shutdown, no checkpoint; the data stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: clients are disconnected); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts the stopped server again on the same port (so URLs handed out stay valid).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is running");
        let port = self.port;
        // The port was ours a moment ago; retry briefly while the old socket is released.
        let mut last = String::new();
        for _ in 0..5 {
            match self.spawn(port) {
                Ok(()) => return,
                Err(log) => last = log,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("PostgreSQL did not start again on port {port}: {last}");
    }

    fn accepts(port: u16) -> bool {
        off_runtime(|| {
            postgres::Client::connect(
                &format!(
                    "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
                ),
                postgres::NoTls,
            )
            .is_ok()
        })
    }

    /// The `postgres` database of this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database in this cluster; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        off_runtime(|| {
            let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect");
            c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .expect("create database");
        });
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The data folder (for tests that inspect or damage it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// SIGINT (PostgreSQL's "fast shutdown") to our own server by its PID, a bounded wait,
/// then SIGKILL.
fn stop_child(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
