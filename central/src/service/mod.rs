//! [`Central`]: the opened store, the signing key and the live channels, with the
//! operations the HTTP API, the CLI and the demo call.
//!
//! Methods here block (they call the store directly); async code calls them through
//! [`Central::blocking`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{
    AeoStatus, Change, ChangeBatch, Consignment, GateId, MraRecord, RegistryRecord, SCHEMA_VERSION,
    SignedEnvelope,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::Config;
use crate::model::{AgentRecord, Case, CaseDetail, GateStatus, Role, Session, StaffUser, Summary};
use crate::registry::{self, Format, ImportKind, MAX_BATCH_CHANGES, RowError};
use crate::signing::Signer;
use crate::store::{RedbStore, Store};

/// Rows per write transaction for bulk imports: large enough that 30,000 operators take
/// a handful of commits (one fsync each), small enough to bound one transaction's memory.
pub const IMPORT_CHUNK: usize = 5_000;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub kind: ImportKind,
    pub rows: usize,
    pub imported: usize,
    pub errors: Vec<RowError>,
    pub last_seq: u64,
}

struct Inner {
    store: Arc<dyn Store>,
    signer: Signer,
    cfg: Config,
    /// Latest registry change seq, for long-polling replicas.
    registry_seq: watch::Sender<u64>,
    /// Every new or changed case, for the live stream.
    cases: broadcast::Sender<Case>,
    /// Cancelled when the server shuts down: ends live streams and long polls.
    stop: CancellationToken,
    /// Failed logins per user name and client address.
    limiter: std::sync::Mutex<auth::LoginLimiter>,
}

/// What a rate-limited login attempt came to.
#[derive(Debug)]
pub enum LoginResult {
    /// A new session: its token (the cookie or bearer value) and the session.
    Ok(String, Session),
    /// Wrong name or password.
    Refused,
    /// Too many recent failures; try again after this long.
    Throttled(SignedDuration),
}

/// Central's state. Cheap to clone.
#[derive(Clone)]
pub struct Central {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Central {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Central")
            .field("store", &self.inner.store)
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

/// Checks a port-of-entry name: 1..=32 characters from `[A-Za-z0-9._-]` (the same rule
/// as gate names, so it is safe in paths, keys and logs).
///
/// # Errors
/// Saying what is wrong.
pub fn check_port(port: &str) -> anyhow::Result<()> {
    GateId::parse(port)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("gate id", "port")))
}

impl Central {
    /// Opens the redb store and loads the signing key named in `cfg`.
    ///
    /// # Errors
    /// When either cannot be opened.
    pub fn open(cfg: &Config) -> anyhow::Result<Central> {
        let store = RedbStore::open(&cfg.store_path)
            .with_context(|| format!("opening store {}", cfg.store_path.display()))?;
        let signer = Signer::load(&cfg.signing_key_path)?;
        Self::with_store(Arc::new(store), signer, cfg.clone())
    }

    /// Builds central over any [`Store`] backend.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn with_store(
        store: Arc<dyn Store>,
        signer: Signer,
        cfg: Config,
    ) -> anyhow::Result<Central> {
        let seq = store.last_seq()?;
        let (registry_seq, _) = watch::channel(seq);
        let (cases, _) = broadcast::channel(1024);
        Ok(Central {
            inner: Arc::new(Inner {
                store,
                signer,
                cfg,
                registry_seq,
                cases,
                stop: CancellationToken::new(),
                limiter: std::sync::Mutex::new(auth::LoginLimiter::default()),
            }),
        })
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration central was opened with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Cancelled at shutdown.
    #[must_use]
    pub fn stop_token(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// Runs blocking work (store calls) off the async workers.
    ///
    /// # Errors
    /// The closure's error, or a join error if it panicked.
    pub async fn blocking<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Central) -> anyhow::Result<T> + Send + 'static,
    {
        let c = self.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .context("blocking task failed")?
    }

    /// Subscribes to new and changed cases.
    #[must_use]
    pub fn subscribe_cases(&self) -> broadcast::Receiver<Case> {
        self.inner.cases.subscribe()
    }

    /// Subscribes to the registry's latest seq.
    #[must_use]
    pub fn subscribe_registry(&self) -> watch::Receiver<u64> {
        self.inner.registry_seq.subscribe()
    }

    pub(crate) fn publish_cases(&self, cases: Vec<Case>) {
        for c in cases {
            // No subscriber is fine: nobody is watching the live view.
            let _ = self.inner.cases.send(c);
        }
    }

    /// Issues a token for `gate` at `port`; returns it (shown once, stored only hashed).
    ///
    /// # Errors
    /// When the port is malformed or the gate is registered at another port.
    pub fn issue_agent_token(&self, gate: &GateId, port: &str) -> anyhow::Result<String> {
        self.issue_agent_token_with_cert(gate, port, None)
    }

    /// As [`Central::issue_agent_token`], and binds the token to a client certificate:
    /// requests with this token are accepted only over TLS connections that presented the
    /// certificate whose DER has SHA-256 `cert_sha256` (hex), chained to central's
    /// `[tls] client_ca_pem`.
    ///
    /// # Errors
    /// A bad port name, a malformed fingerprint, or store errors.
    pub fn issue_agent_token_with_cert(
        &self,
        gate: &GateId,
        port: &str,
        cert_sha256: Option<String>,
    ) -> anyhow::Result<String> {
        check_port(port)?;
        if let Some(fp) = &cert_sha256
            && (fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            anyhow::bail!("a certificate fingerprint is 64 hex digits (SHA-256 of the DER)");
        }
        let (token, hash) = auth::new_token();
        let rec = AgentRecord {
            gate: gate.clone(),
            port: port.to_owned(),
            issued_at: Timestamp::now(),
            issued_by: "central".into(),
            cert_sha256: cert_sha256.map(|f| f.to_ascii_lowercase()),
        };
        self.inner.store.add_agent(&hash, &rec)?;
        Ok(token)
    }

    /// The agent a bearer token belongs to.
    ///
    /// # Errors
    /// Store errors.
    pub fn agent_for_token(&self, token: &str) -> anyhow::Result<Option<AgentRecord>> {
        Ok(self.inner.store.agent_for_token(&auth::hash_token(token))?)
    }

    fn append(&self, changes: Vec<Change>, actor: &str) -> anyhow::Result<u64> {
        let mut last = self.inner.store.last_seq()?;
        for chunk in changes.chunks(IMPORT_CHUNK) {
            last = self
                .inner
                .store
                .append_changes(chunk, actor, Timestamp::now())?;
            self.inner.registry_seq.send_replace(last);
        }
        metrics::counter!("central_registry_changes_total").increment(changes.len() as u64);
        Ok(last)
    }

    /// Imports operator records (one change each); returns the last seq.
    ///
    /// # Errors
    /// When a record has a newer schema version, or on store errors.
    pub fn import_records(&self, records: Vec<RegistryRecord>, actor: &str) -> anyhow::Result<u64> {
        if let Some(r) = records.iter().find(|r| r.v > SCHEMA_VERSION) {
            bail!(
                "operator {}: schema version {} is newer than {SCHEMA_VERSION}",
                r.operator,
                r.v
            );
        }
        self.append(
            records
                .into_iter()
                .map(|record| Change::UpsertOperator { record })
                .collect(),
            actor,
        )
    }

    /// Imports MRAs; returns the last seq.
    ///
    /// # Errors
    /// On store errors.
    pub fn import_mras(&self, mras: Vec<MraRecord>, actor: &str) -> anyhow::Result<u64> {
        self.append(
            mras.into_iter()
                .map(|mra| Change::UpsertMra { mra })
                .collect(),
            actor,
        )
    }

    /// Imports consignments; returns the last seq.
    ///
    /// # Errors
    /// When a consignment names a malformed port, or on store errors.
    pub fn import_consignments(&self, c: Vec<Consignment>, actor: &str) -> anyhow::Result<u64> {
        for k in &c {
            for p in &k.ports {
                check_port(p).with_context(|| format!("consignment {}", k.id))?;
            }
        }
        self.append(
            c.into_iter()
                .map(|consignment| Change::UpsertConsignment { consignment })
                .collect(),
            actor,
        )
    }

    /// Imports a CSV or JSON file (format from the extension: `.csv`, else JSON), keeping
    /// the good rows. `progress` gets the number of rows read so far.
    ///
    /// # Errors
    /// When the file cannot be read or is unusable as a whole.
    pub fn import_file(
        &self,
        path: &Path,
        kind: Option<ImportKind>,
        actor: &str,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<ImportReport> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Json,
        };
        let parsed = registry::parse_import(&text, format, kind, Timestamp::now(), progress)
            .with_context(|| format!("importing {}", path.display()))?;
        let imported = parsed.changes.len();
        let last_seq = self.append(parsed.changes, actor)?;
        Ok(ImportReport {
            kind: parsed.kind,
            rows: parsed.rows,
            imported,
            errors: parsed.errors,
            last_seq,
        })
    }

    /// Changes an operator's status (reinstate = `Active`); returns the change's seq.
    ///
    /// # Errors
    /// When the operator is not in the registry or the reason or actor is empty.
    pub fn set_status(
        &self,
        op: &OperatorId,
        status: AeoStatus,
        reason: &str,
        actor: &str,
    ) -> anyhow::Result<u64> {
        if reason.trim().is_empty() {
            bail!("a reason is required for a status change");
        }
        if actor.trim().is_empty() {
            bail!("an actor is required for a status change");
        }
        let now = Timestamp::now();
        let change = registry::set_status_change(op, status, reason.trim(), actor, now);
        let seq = self.inner.store.append_changes(&[change], actor, now)?;
        self.inner.registry_seq.send_replace(seq);
        Ok(seq)
    }

    /// Hex of the signing key's public key.
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        self.inner.signer.public_key_hex()
    }

    /// The signing key's id.
    #[must_use]
    pub fn key_id(&self) -> String {
        self.inner.signer.key_id().to_owned()
    }

    /// Totals (events stored per gate, decisions by outcome, cases, alerts).
    ///
    /// # Errors
    /// Store errors.
    pub fn summary(&self) -> anyhow::Result<Summary> {
        Ok(self.inner.store.summary()?)
    }

    /// Every gate with its health; stale when the last heartbeat is older than
    /// `stale_after` (or there was none).
    ///
    /// # Errors
    /// Store errors.
    pub fn gates(&self, now: Timestamp) -> anyhow::Result<Vec<GateStatus>> {
        let stale_after =
            SignedDuration::try_from(self.inner.cfg.stale_after).unwrap_or(SignedDuration::MAX);
        let summary = self.inner.store.summary()?;
        Ok(self
            .inner
            .store
            .gates()?
            .into_iter()
            .map(|g| GateStatus {
                stale: g
                    .health
                    .as_ref()
                    .is_none_or(|h| now.duration_since(h.received_at) > stale_after),
                events_stored: summary
                    .events_per_gate
                    .get(g.gate.as_str())
                    .copied()
                    .unwrap_or(0),
                acked_through: g.state.acked_through,
                gate: g.gate,
                port: g.port,
                last_heartbeat: g.health,
            })
            .collect())
    }

    /// The signed snapshot for `port`.
    ///
    /// # Errors
    /// Store or serialisation errors.
    pub fn snapshot_envelope(&self, port: &str) -> anyhow::Result<SignedEnvelope> {
        let snap = self.inner.store.snapshot(port, Timestamp::now())?;
        let batch = ChangeBatch {
            v: SCHEMA_VERSION,
            snapshot: true,
            after_seq: 0,
            last_seq: snap.last_seq,
            port: port.to_owned(),
            as_of: snap.as_of,
            changes: snap.changes,
        };
        Ok(self.inner.signer.sign(serde_json::to_string(&batch)?))
    }

    /// The signed batch for `port` after `after`, or `None` when nothing is newer.
    ///
    /// # Errors
    /// Store or serialisation errors.
    pub fn changes_envelope(
        &self,
        port: &str,
        after: u64,
    ) -> anyhow::Result<Option<SignedEnvelope>> {
        let logged = self.inner.store.changes_after(after, MAX_BATCH_CHANGES)?;
        match registry::batch_for_port(port, after, &logged) {
            None => Ok(None),
            Some(batch) => Ok(Some(self.inner.signer.sign(serde_json::to_string(&batch)?))),
        }
    }

    /// Adds a staff user (password hashed with Argon2id using the configured cost).
    /// `role` is `analyst` or `admin` ([`Role::parse`], which also reads the legacy names).
    ///
    /// # Errors
    /// When the user exists, the name is malformed, the role is unknown or the password is
    /// shorter than 8.
    pub fn add_user(&self, name: &str, password: &str, role: &str) -> anyhow::Result<()> {
        let Some(role) = Role::parse(role) else {
            bail!("role {role:?}: expected analyst or admin");
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        {
            bail!("user name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'");
        }
        if password.chars().count() < 8 {
            bail!("password must be at least 8 characters");
        }
        let phc = auth::hash_password(
            password,
            self.inner.cfg.argon2_m_cost_kib,
            self.inner.cfg.argon2_t_cost,
        )?;
        self.inner.store.add_user(&StaffUser {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            password_phc: phc,
            created_at: Timestamp::now(),
            lang: Lang::default(),
        })?;
        Ok(())
    }

    /// [`Central::login`] behind the login rate limit ([`auth::LoginLimiter`]): throttled
    /// attempts are refused without checking the password, and audited.
    ///
    /// # Errors
    /// Store errors.
    pub fn login_limited(
        &self,
        name: &str,
        password: &str,
        addr: Option<std::net::IpAddr>,
    ) -> anyhow::Result<LoginResult> {
        let now = Timestamp::now();
        let wait = self
            .inner
            .limiter
            .lock()
            .map_err(|_| anyhow::anyhow!("login limiter lock poisoned"))?
            .check(name, addr, now);
        if let Some(wait) = wait {
            let from = addr.map_or_else(|| "unknown address".to_owned(), |a| a.to_string());
            self.inner.store.audit(
                name,
                "login.throttled",
                &format!("too many failed logins (from {from})"),
                now,
            )?;
            metrics::counter!("central_auth_failures_total", "who" => "throttled").increment(1);
            return Ok(LoginResult::Throttled(wait));
        }
        let out = self.login(name, password)?;
        let mut l = self
            .inner
            .limiter
            .lock()
            .map_err(|_| anyhow::anyhow!("login limiter lock poisoned"))?;
        Ok(match out {
            Some((token, s)) => {
                l.succeeded(name);
                LoginResult::Ok(token, s)
            }
            None => {
                l.failed(name, addr, Timestamp::now());
                LoginResult::Refused
            }
        })
    }

    /// A case with everything staff need to work it: the gate transaction and its reads,
    /// the decision, the consignments declared for its containers, the officers'
    /// inspection results and the alert. `None` when there is no such case.
    ///
    /// # Errors
    /// Store errors.
    pub fn case_detail(&self, id: u64) -> anyhow::Result<Option<CaseDetail>> {
        use protocol::schema::{ActionKind, EventBody};
        let store = self.store();
        let Some(case) = store.case(id)? else {
            return Ok(None);
        };
        let mut d = CaseDetail {
            case,
            transaction: None,
            decision: None,
            declared: Vec::new(),
            officer_results: Vec::new(),
            alert: None,
        };
        if let Some(txn) = d.case.transaction_id() {
            for e in store.transaction_events(&txn)? {
                match e.entry.body {
                    EventBody::Transaction { transaction } => d.transaction = Some(transaction),
                    EventBody::Decision { decision } => d.decision = Some(decision),
                    EventBody::OfficerAction { action }
                        if matches!(action.kind, ActionKind::InspectionResult { .. }) =>
                    {
                        d.officer_results.push(action);
                    }
                    _ => {}
                }
            }
            let containers = d
                .transaction
                .as_ref()
                .map(protocol::schema::GateTransaction::containers)
                .unwrap_or_default();
            for cn in containers {
                for k in store.consignments_for_container(cn.as_str())? {
                    if !d.declared.iter().any(|x| x.id == k.id) {
                        d.declared.push(k);
                    }
                }
            }
        }
        if let crate::model::CaseSubject::Integrity { alert_id, .. } = d.case.subject {
            d.alert = store.alert(alert_id)?;
        }
        Ok(Some(d))
    }

    /// Ends a session (logout), audited.
    ///
    /// # Errors
    /// Store errors.
    pub fn logout(&self, token: &str) -> anyhow::Result<()> {
        let hash = auth::hash_token(token);
        if let Some(s) = self.inner.store.session(&hash)? {
            self.inner.store.delete_session(&hash)?;
            self.inner
                .store
                .audit(&s.user, "logout", "session closed", Timestamp::now())?;
        }
        Ok(())
    }

    /// Every staff user.
    ///
    /// # Errors
    /// Store errors.
    pub fn users(&self) -> anyhow::Result<Vec<StaffUser>> {
        Ok(self.inner.store.users()?)
    }

    /// Sets a user's dashboard language.
    ///
    /// # Errors
    /// When the user does not exist, or store errors.
    pub fn set_user_lang(&self, name: &str, lang: Lang) -> anyhow::Result<()> {
        Ok(self
            .inner
            .store
            .set_user_lang(name, lang, Timestamp::now())?)
    }

    /// Checks a password and opens a session; returns its token, or `None` when the
    /// name or password is wrong.
    ///
    /// # Errors
    /// Store errors.
    pub fn login(&self, name: &str, password: &str) -> anyhow::Result<Option<(String, Session)>> {
        let Some(user) = self.inner.store.user(name)? else {
            return Ok(None);
        };
        if !auth::verify_password(password, &user.password_phc) {
            self.inner
                .store
                .audit(name, "login.failed", "wrong password", Timestamp::now())?;
            return Ok(None);
        }
        let (token, hash) = auth::new_token();
        let ttl = SignedDuration::try_from(self.inner.cfg.session_ttl)
            .unwrap_or(SignedDuration::from_hours(12));
        let now = Timestamp::now();
        let session = Session {
            user: user.name.clone(),
            role: user.role,
            expires_at: now.checked_add(ttl).unwrap_or(now),
        };
        self.inner.store.put_session(&hash, &session)?;
        self.inner
            .store
            .audit(name, "login", "session opened", now)?;
        Ok(Some((token, session)))
    }

    /// The live session a bearer token names, if any.
    ///
    /// # Errors
    /// Store errors.
    pub fn session(&self, token: &str) -> anyhow::Result<Option<Session>> {
        let s = self.inner.store.session(&auth::hash_token(token))?;
        Ok(s.filter(|s| s.expires_at > Timestamp::now()))
    }
}
