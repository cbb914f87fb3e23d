//! Console accounts and sessions, kept in the agent's redb file beside the journal.
//!
//! Tables: `console_users_v1` (name → [`UserRecord`] JSON) and `console_sessions_v1`
//! (SHA-256 of the session token, hex → [`SessionRecord`] JSON). Only the token's hash is
//! stored, so a copy of the store does not hand out live sessions. Sessions survive an
//! agent restart (an officer mid-shift is not logged out by a restart) and expire after
//! [`SESSION_TTL`] whatever their use.
//!
//! Passwords are hashed with Argon2id and the parameters OWASP recommends
//! (m = 19 MiB, t = 2, p = 1, the `argon2` crate's defaults) in PHC string format.
//!
//! Every method blocks (redb); async callers use `spawn_blocking`.

use std::fmt;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use jiff::Timestamp;
use protocol::i18n::Lang;
use rand::RngCore as _;
use redb::{ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::Store;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("console_users_v1");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("console_sessions_v1");

/// How long a session lasts: one long shift.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Shortest password accepted (NIST SP 800-63B §5.1.1.2: at least 8).
pub const MIN_PASSWORD: usize = 10;

/// What a console account may do.
///
/// | role | officer console | override | terminal operator view | JSON API |
/// |---|---|---|---|---|
/// | `officer` | yes | to a stricter lane only | yes | yes |
/// | `supervisor` | yes | any lane | yes | yes |
/// | `operator` | no (403) | no | yes | no (403) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A customs officer in the gate booth.
    Officer,
    /// A customs supervisor: an officer who may also relax a lane.
    Supervisor,
    /// The terminal operator's staff: routes and queues, never risk reasons.
    Operator,
}

impl Role {
    /// Parses `officer`, `supervisor` or `operator`.
    ///
    /// # Errors
    /// [`UserError::BadRole`] for anything else.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "officer" => Ok(Self::Officer),
            "supervisor" => Ok(Self::Supervisor),
            "operator" => Ok(Self::Operator),
            _ => Err(UserError::BadRole(s.to_owned())),
        }
    }

    /// The role's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Officer => "officer",
            Self::Supervisor => "supervisor",
            Self::Operator => "operator",
        }
    }

    /// Customs staff (officer or supervisor): may see risk reasons and act on lanes.
    #[must_use]
    pub fn is_customs(self) -> bool {
        matches!(self, Self::Officer | Self::Supervisor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A console account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Screen language.
    pub lang: Lang,
    /// When created or last changed.
    pub updated_at: Timestamp,
}

/// A live session as stored (under the hash of its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Account name.
    pub user: String,
    /// Role at login.
    pub role: Role,
    /// Language at login.
    pub lang: Lang,
    /// Token that forms and script calls made with this session's cookie must echo
    /// (`csrf` form field or `X-CSRF-Token` header).
    pub csrf: String,
    /// Issued.
    pub created: Timestamp,
    /// Invalid after this.
    pub expires: Timestamp,
}

/// Account and session errors.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A login name outside the allowed form.
    #[error("user name {0:?}: 1..=32 characters from letters, digits, '.', '_', '-'")]
    BadName(String),
    /// Unknown role.
    #[error("role {0:?}: expected officer, supervisor or operator")]
    BadRole(String),
    /// Password too short or too long.
    #[error("password must be {MIN_PASSWORD}..=256 characters")]
    BadPassword,
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The database refused.
    #[error("console account storage: {0}")]
    Db(String),
    /// A stored record does not decode.
    #[error("stored console record {key:?} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
}

fn db(e: impl fmt::Display) -> UserError {
    UserError::Db(e.to_string())
}

/// Checks a login name: 1..=32 characters from `[A-Za-z0-9._-]`.
///
/// # Errors
/// [`UserError::BadName`].
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

/// 32 random bytes as 64 hex digits, from the OS-seeded thread RNG (a CSPRNG).
#[must_use]
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with Argon2id.
///
/// # Errors
/// [`UserError::BadPassword`] or [`UserError::Hash`].
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD || password.len() > 256 {
        return Err(UserError::BadPassword);
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// A PHC string no password matches; verified against when the user is unknown, so a
/// login takes as long for a wrong name as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Accounts and sessions over a [`Store`]'s database.
#[derive(Debug, Clone)]
pub struct Users {
    store: Store,
}

impl Users {
    /// Opens (creating if needed) the account tables.
    ///
    /// # Errors
    /// [`UserError::Db`].
    pub fn open(store: &Store) -> Result<Self, UserError> {
        let w = store.database().begin_write().map_err(db)?;
        w.open_table(USERS).map_err(db)?;
        w.open_table(SESSIONS).map_err(db)?;
        w.commit().map_err(db)?;
        Ok(Self {
            store: store.clone(),
        })
    }

    /// Creates or replaces an account.
    ///
    /// # Errors
    /// Invalid name or password; storage failures.
    pub fn put(&self, name: &str, password: &str, role: Role, lang: Lang) -> Result<(), UserError> {
        check_name(name)?;
        let rec = UserRecord {
            name: name.to_owned(),
            role,
            password_hash: hash_password(password)?,
            lang,
            updated_at: Timestamp::now(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(db)?;
        let w = self.store.database().begin_write().map_err(db)?;
        {
            let mut t = w.open_table(USERS).map_err(db)?;
            t.insert(name, bytes.as_slice()).map_err(db)?;
            // A changed password or role ends the account's sessions.
            let mut s = w.open_table(SESSIONS).map_err(db)?;
            let stale: Vec<String> = s
                .iter()
                .map_err(db)?
                .filter_map(Result::ok)
                .filter(|(_, v)| {
                    serde_json::from_slice::<SessionRecord>(v.value()).is_ok_and(|r| r.user == name)
                })
                .map(|(k, _)| k.value().to_owned())
                .collect();
            for k in stale {
                s.remove(k.as_str()).map_err(db)?;
            }
        }
        w.commit().map_err(db)?;
        Ok(())
    }

    /// One account.
    ///
    /// # Errors
    /// Storage failures; an unreadable record.
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, UserError> {
        let r = self.store.database().begin_read().map_err(db)?;
        let t = r.open_table(USERS).map_err(db)?;
        let Some(v) = t.get(name).map_err(db)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| UserError::Corrupt {
                key: name.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Every account, by name.
    ///
    /// # Errors
    /// Storage failures.
    pub fn list(&self) -> Result<Vec<UserRecord>, UserError> {
        let r = self.store.database().begin_read().map_err(db)?;
        let t = r.open_table(USERS).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            let (_, v) = item.map_err(db)?;
            if let Ok(u) = serde_json::from_slice::<UserRecord>(v.value()) {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Checks a name and password; the account when they match. Takes the same time for
    /// an unknown name as for a wrong password.
    ///
    /// # Errors
    /// Storage failures.
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, UserError> {
        if check_name(name).is_err() || password.len() > 256 {
            let _ = verify(password, dummy_hash());
            return Ok(None);
        }
        match self.get(name)? {
            Some(u) if verify(password, &u.password_hash) => Ok(Some(u)),
            Some(_) => Ok(None),
            None => {
                let _ = verify(password, dummy_hash());
                Ok(None)
            }
        }
    }

    /// Starts a session for `user` with a fresh random token; returns the token (given
    /// to the client once) and the record.
    ///
    /// # Errors
    /// Storage failures.
    pub fn start_session(&self, user: &UserRecord) -> Result<(String, SessionRecord), UserError> {
        let token = random_token();
        let rec = self.insert_session(&token, &user.name, user.role, user.lang, SESSION_TTL)?;
        Ok((token, rec))
    }

    /// Stores a session under a token the caller chose (at least 32 characters), for
    /// provisioning scripts and tests that must reach the API of an agent they started.
    ///
    /// # Errors
    /// Token too short; storage failures.
    pub fn insert_session(
        &self,
        token: &str,
        user: &str,
        role: Role,
        lang: Lang,
        ttl: Duration,
    ) -> Result<SessionRecord, UserError> {
        check_name(user)?;
        if token.len() < 32 {
            return Err(UserError::Db(
                "a session token has at least 32 characters".into(),
            ));
        }
        let now = Timestamp::now();
        let ttl = jiff::SignedDuration::try_from(ttl).map_err(db)?;
        let rec = SessionRecord {
            user: user.to_owned(),
            role,
            lang,
            csrf: random_token(),
            created: now,
            expires: now.checked_add(ttl).map_err(db)?,
        };
        let bytes = serde_json::to_vec(&rec).map_err(db)?;
        let w = self.store.database().begin_write().map_err(db)?;
        {
            let mut t = w.open_table(SESSIONS).map_err(db)?;
            // Expired sessions are swept at each login.
            let expired: Vec<String> = t
                .iter()
                .map_err(db)?
                .filter_map(Result::ok)
                .filter(|(_, v)| {
                    serde_json::from_slice::<SessionRecord>(v.value())
                        .map_or(true, |r| r.expires <= now)
                })
                .map(|(k, _)| k.value().to_owned())
                .collect();
            for k in expired {
                t.remove(k.as_str()).map_err(db)?;
            }
            t.insert(token_key(token).as_str(), bytes.as_slice())
                .map_err(db)?;
        }
        w.commit().map_err(db)?;
        Ok(rec)
    }

    /// The live session of a token, if any.
    ///
    /// # Errors
    /// Storage failures.
    pub fn session(&self, token: &str) -> Result<Option<SessionRecord>, UserError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let r = self.store.database().begin_read().map_err(db)?;
        let t = r.open_table(SESSIONS).map_err(db)?;
        let Some(v) = t.get(token_key(token).as_str()).map_err(db)? else {
            return Ok(None);
        };
        let rec: SessionRecord = match serde_json::from_slice(v.value()) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        Ok((rec.expires > Timestamp::now()).then_some(rec))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage failures.
    pub fn end_session(&self, token: &str) -> Result<(), UserError> {
        let w = self.store.database().begin_write().map_err(db)?;
        {
            let mut t = w.open_table(SESSIONS).map_err(db)?;
            t.remove(token_key(token).as_str()).map_err(db)?;
        }
        w.commit().map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::GateId;

    fn users(dir: &std::path::Path) -> Users {
        let store =
            Store::open(&dir.join("s.redb"), GateId::parse("G1").expect("gate")).expect("store");
        Users::open(&store).expect("users")
    }

    #[test]
    fn passwords_verify_and_sessions_expire_or_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let u = users(dir.path());
        assert!(matches!(
            u.put("a b", "long enough pw", Role::Officer, Lang::Es),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            u.put("ana", "short", Role::Officer, Lang::Es),
            Err(UserError::BadPassword)
        ));
        u.put("ana", "correct horse 1", Role::Officer, Lang::Es)
            .expect("put");
        let rec = u.get("ana").expect("get").expect("exists");
        assert!(
            rec.password_hash.starts_with("$argon2id$"),
            "{}",
            rec.password_hash
        );
        assert!(
            u.authenticate("ana", "wrong horse 1")
                .expect("auth")
                .is_none()
        );
        assert!(
            u.authenticate("bob", "correct horse 1")
                .expect("auth")
                .is_none()
        );
        let ok = u
            .authenticate("ana", "correct horse 1")
            .expect("auth")
            .expect("match");
        let (token, s) = u.start_session(&ok).expect("session");
        assert_eq!((s.role, s.lang), (Role::Officer, Lang::Es));
        assert_eq!(
            u.session(&token).expect("lookup").expect("live").user,
            "ana"
        );
        assert!(u.session("not-a-token").expect("lookup").is_none());
        u.end_session(&token).expect("end");
        assert!(u.session(&token).expect("lookup").is_none());

        let short = u
            .insert_session(
                &random_token(),
                "ana",
                Role::Officer,
                Lang::En,
                Duration::ZERO,
            )
            .expect("insert");
        assert!(short.expires <= Timestamp::now());
        // Changing the password ends existing sessions.
        let (token, _) = u.start_session(&ok).expect("session");
        u.put("ana", "another horse 2", Role::Supervisor, Lang::Pt)
            .expect("put");
        assert!(u.session(&token).expect("lookup").is_none());
    }
}
