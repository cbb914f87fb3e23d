//! Agents: tokens, ingest of journal batches, heartbeats.

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{
    GateId, Heartbeat, IngestAck, ReceivedBatch, SCHEMA_VERSION, check_version,
};

use super::{Central, check_port};
use crate::auth::{self, AuthError};
use crate::ingest::{self, IngestError};
use crate::model::{AgentRecord, GateHealth};
use crate::store::{Delivery, TokenChange};

fn check_fingerprint(fp: &str) -> Result<(), AuthError> {
    if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Invalid(
            "a certificate fingerprint is 64 hex digits (SHA-256 of the DER)".into(),
        ));
    }
    Ok(())
}

impl Central {
    /// Issues a token for `gate` at `port`; returns it (shown once, stored only hashed).
    ///
    /// # Errors
    /// When the port is malformed or the gate is registered at another port.
    pub fn issue_agent_token(&self, gate: &GateId, port: &str) -> Result<String, AuthError> {
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
    ) -> Result<String, AuthError> {
        check_port(port).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if let Some(fp) = &cert_sha256 {
            check_fingerprint(fp)?;
        }
        let (token, hash) = auth::new_token();
        let rec = AgentRecord {
            gate: gate.clone(),
            port: port.to_owned(),
            issued_at: Timestamp::now(),
            issued_by: "central".into(),
            cert_sha256: cert_sha256.map(|f| f.to_ascii_lowercase()),
            revoked_at: None,
            expires_at: None,
        };
        self.inner.store.add_agent(&hash, &rec)?;
        Ok(token)
    }

    /// Revokes `gate`'s tokens at once: every token of the gate, or with `cert_sha256`
    /// only the tokens bound to that client certificate. Requests with a revoked token are
    /// refused (403) from the next request on; the gate health page shows the gate as
    /// revoked once none of its tokens is usable. Returns how many tokens were revoked
    /// (tokens already refused, revoked or past a rotation's grace, are left as they are).
    /// A new `agent add` lifts the mark.
    ///
    /// # Errors
    /// An unknown gate, a malformed fingerprint, or store errors.
    pub fn revoke_agent(
        &self,
        gate: &GateId,
        cert_sha256: Option<&str>,
        actor: &str,
    ) -> Result<usize, AuthError> {
        let cert = cert_sha256.map(str::to_ascii_lowercase);
        if let Some(fp) = &cert {
            check_fingerprint(fp)?;
        }
        let at = Timestamp::now();
        let detail = match &cert {
            Some(fp) => format!("tokens of gate {gate} bound to certificate {fp}"),
            None => format!("every token of gate {gate}"),
        };
        let mut change = |rec: &mut AgentRecord| {
            let hit = cert
                .as_deref()
                .is_none_or(|fp| rec.cert_sha256.as_deref() == Some(fp));
            // A token already refused (revoked, or past its grace) stays as it is.
            if !hit || !rec.is_live(at) {
                return false;
            }
            rec.revoked_at = Some(at);
            true
        };
        Ok(self.inner.store.change_agent_tokens(TokenChange {
            gate,
            change: &mut change,
            add: None,
            actor,
            action: "agent.token.revoke",
            detail: &detail,
            at,
        })?)
    }

    /// Issues a new token for `gate` (same port and client certificate as its newest live
    /// token) and lets the gate's other live tokens work for `grace` more, then refuses
    /// them. Returns the new token (shown once) and how many old tokens got the deadline.
    ///
    /// # Errors
    /// An unknown gate, a gate without a live token (revoked: issue one with `agent add`),
    /// a negative grace, or store errors.
    pub fn rotate_agent(
        &self,
        gate: &GateId,
        grace: SignedDuration,
        actor: &str,
    ) -> Result<(String, usize), AuthError> {
        if grace.is_negative() {
            return Err(AuthError::Invalid(
                "the grace period cannot be negative".into(),
            ));
        }
        let at = Timestamp::now();
        let until = at
            .checked_add(grace)
            .map_err(|e| AuthError::Invalid(format!("grace period {grace}: {e}")))?;
        let (token, hash) = auth::new_token();
        // The newest live token gives the port and certificate binding of the new one; the
        // store's transaction calls `change` on every token, and `add` is stored after.
        let newest = self.live_token_of(gate, at)?;
        let Some(newest) = newest else {
            return Err(AuthError::Invalid(format!(
                "gate {gate} has no live token to rotate; issue one with `central agent add`"
            )));
        };
        let rec = AgentRecord {
            gate: gate.clone(),
            port: newest.port,
            issued_at: at,
            issued_by: actor.to_owned(),
            cert_sha256: newest.cert_sha256,
            revoked_at: None,
            expires_at: None,
        };
        let mut change = |old: &mut AgentRecord| {
            if !old.is_live(at) || old.expires_at.is_some_and(|e| e <= until) {
                return false;
            }
            old.expires_at = Some(until);
            true
        };
        let n = self.inner.store.change_agent_tokens(TokenChange {
            gate,
            change: &mut change,
            add: Some((&hash, &rec)),
            actor,
            action: "agent.token.rotate",
            detail: &format!("new token for gate {gate}; old tokens accepted until {until}"),
            at,
        })?;
        Ok((token, n))
    }

    /// The most recently issued live token record of `gate`.
    ///
    /// # Errors
    /// [`crate::store::StoreError::UnknownGate`] when the gate has no token at all.
    fn live_token_of(
        &self,
        gate: &GateId,
        now: Timestamp,
    ) -> Result<Option<AgentRecord>, AuthError> {
        let all = self.inner.store.agent_tokens(gate)?;
        if all.is_empty() {
            return Err(crate::store::StoreError::UnknownGate(gate.to_string()).into());
        }
        Ok(all
            .into_iter()
            .filter(|r| r.is_live(now))
            .max_by_key(|r| r.issued_at))
    }

    /// The agent a bearer token belongs to.
    ///
    /// # Errors
    /// Store errors.
    pub fn agent_for_token(&self, token: &str) -> Result<Option<AgentRecord>, AuthError> {
        Ok(self.inner.store.agent_for_token(&auth::hash_token(token))?)
    }

    fn gap_alert_after(&self) -> SignedDuration {
        SignedDuration::try_from(self.inner.cfg.gap_alert_after).unwrap_or(SignedDuration::MAX)
    }

    /// Checks and stores an agent's batch ([`crate::ingest`]), publishes the cases it
    /// opened or changed, and answers with the acknowledgement.
    ///
    /// # Errors
    /// [`IngestError`]: the token is for another gate, the batch is refused as a whole, or
    /// storage failed (nothing of the batch is acknowledged then).
    pub fn ingest(
        &self,
        agent: &AgentRecord,
        gate: &GateId,
        received: &ReceivedBatch<'_>,
    ) -> Result<IngestAck, IngestError> {
        let batch = &received.batch;
        ingest::for_gate(agent, gate)?;
        ingest::check_batch(gate, batch)?;
        let n = batch.entries.len();
        let out = self.inner.store.ingest(
            Delivery::new(
                gate,
                &batch.entries,
                Timestamp::now(),
                self.gap_alert_after(),
            )
            .with_bodies(&received.bodies),
        )?;
        metrics::counter!("central_entries_received_total").increment(n as u64);
        metrics::counter!("central_entries_stored_total").increment(out.tally.stored);
        metrics::counter!("central_entries_duplicate_total").increment(out.tally.duplicates);
        for (outcome, n) in &out.tally.decisions {
            metrics::counter!("central_decisions_total", "outcome" => *outcome).increment(*n);
        }
        if !out.tally.alerts.is_empty() {
            tracing::warn!(gate = %agent.gate, alerts = ?out.tally.alerts, "integrity alerts on ingest");
        }
        self.publish_cases(out.cases);
        Ok(IngestAck {
            v: SCHEMA_VERSION,
            acked_through: out.acked_through,
            stored: out.tally.stored,
            duplicates: out.tally.duplicates,
            alerts: out.tally.alerts,
        })
    }

    /// Records an agent's heartbeat as its gate's latest health (with the clock offset
    /// seen on arrival) and publishes a gap alert's case if one is raised.
    ///
    /// # Errors
    /// [`IngestError`]: another gate's token or heartbeat, a newer schema, or storage.
    pub fn heartbeat(
        &self,
        agent: &AgentRecord,
        gate: &GateId,
        hb: Heartbeat,
    ) -> Result<(), IngestError> {
        ingest::for_gate(agent, gate)?;
        check_version(hb.v).map_err(IngestError::HeartbeatVersion)?;
        if &hb.agent != gate {
            return Err(IngestError::HeartbeatAgent {
                found: hb.agent.to_string(),
                path: gate.to_string(),
            });
        }
        let now = Timestamp::now();
        let offset = now.duration_since(hb.at).as_millis();
        let health = GateHealth {
            heartbeat: hb,
            received_at: now,
            clock_offset_ms: i64::try_from(offset).unwrap_or(i64::MAX),
        };
        let cases = self
            .inner
            .store
            .record_heartbeat(&health, self.gap_alert_after())?;
        self.publish_cases(cases);
        Ok(())
    }
}
