//! Console accounts and sessions, kept in the agent's redb file beside the journal, in
//! the two tables the store lends the console ([`crate::store::AccountTables`]):
//! accounts by name ([`UserRecord`] JSON) and sessions by the hex SHA-256 of their token
//! ([`SessionRecord`] JSON). Only the token's hash is stored, so a copy of the store does
//! not hand out live sessions. Sessions survive an agent restart (an officer mid-shift is
//! not logged out by a restart) and expire after [`SESSION_TTL`] whatever their use.
//!
//! Passwords get the project's one Argon2id configuration and strength rule
//! ([`aeogate_web::password`]: OWASP's m = 19 MiB, t = 2, p = 1; at least 8 characters
//! and a zxcvbn score of 3), as central's staff passwords do.
//!
//! Every method blocks (redb); async callers use `spawn_blocking`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aeogate_web::password::Passwords;
use jiff::Timestamp;
use protocol::i18n::Lang;
use serde::{Deserialize, Serialize};

use crate::store::{AccountTable, AccountTables, Store};

/// How long a session lasts: one long shift.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Longest password accepted, in bytes (bounds the hashing work a login can ask for).
pub const MAX_PASSWORD_BYTES: usize = 256;

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
        <Self as aeogate_web::session::Role>::parse(s)
            .ok_or_else(|| UserError::BadRole(s.to_owned()))
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

impl aeogate_web::session::Role for Role {
    const ALL: &'static [Self] = &[Self::Operator, Self::Officer, Self::Supervisor];

    fn as_str(self) -> &'static str {
        Role::as_str(self)
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
    /// Password too short, too long or too easy to guess, saying why.
    #[error("{0}")]
    BadPassword(String),
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

impl From<redb::Error> for UserError {
    fn from(e: redb::Error) -> Self {
        db(e)
    }
}

impl From<aeogate_web::password::PasswordError> for UserError {
    fn from(e: aeogate_web::password::PasswordError) -> Self {
        match e {
            aeogate_web::password::PasswordError::Weak(why) => Self::BadPassword(why),
            aeogate_web::password::PasswordError::Hash(why) => Self::Hash(why),
        }
    }
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

pub use aeogate_web::secret::random_token;

fn token_key(token: &str) -> String {
    hex::encode(aeogate_web::secret::digest(token))
}

/// Checks a new password: at most [`MAX_PASSWORD_BYTES`], and the project's strength
/// rule ([`aeogate_web::password::check_strength`]; the account name counts as a known
/// word).
///
/// # Errors
/// [`UserError::BadPassword`] saying why.
pub fn check_password(password: &str, name: &str) -> Result<(), UserError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::BadPassword(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(aeogate_web::password::check_strength(password, name)?)
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, UserError> {
    serde_json::from_slice(bytes).map_err(|e| UserError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// The sessions in `entries` (as read from the sessions table) that `stale` picks; an
/// unreadable session counts as stale.
fn session_keys(
    entries: Vec<(String, Vec<u8>)>,
    stale: impl Fn(&SessionRecord) -> bool,
) -> Vec<String> {
    entries
        .into_iter()
        .filter(|(_, v)| serde_json::from_slice::<SessionRecord>(v).map_or(true, |r| stale(&r)))
        .map(|(k, _)| k)
        .collect()
}

/// Accounts and sessions over the store's account tables.
#[derive(Debug, Clone)]
pub struct Users {
    tables: AccountTables,
    passwords: Arc<Passwords>,
}

impl Users {
    /// Opens (creating if needed) the account tables.
    ///
    /// # Errors
    /// [`UserError::Db`].
    pub fn open(store: &Store) -> Result<Self, UserError> {
        Ok(Self {
            tables: store.accounts()?,
            passwords: Arc::new(Passwords::default()),
        })
    }

    /// Creates or replaces an account.
    ///
    /// # Errors
    /// Invalid name or password; storage failures.
    pub fn put(&self, name: &str, password: &str, role: Role, lang: Lang) -> Result<(), UserError> {
        check_name(name)?;
        check_password(password, name)?;
        let rec = UserRecord {
            name: name.to_owned(),
            role,
            password_hash: self.passwords.hash(password)?,
            lang,
            updated_at: Timestamp::now(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(db)?;
        self.tables.write(|t| {
            t.insert(AccountTable::Users, name, &bytes)?;
            // A changed password or role ends the account's sessions.
            let entries = t.entries(AccountTable::Sessions)?;
            for k in session_keys(entries, |r| r.user == name) {
                t.remove(AccountTable::Sessions, &k)?;
            }
            Ok::<_, UserError>(())
        })
    }

    /// One account.
    ///
    /// # Errors
    /// Storage failures; an unreadable record.
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, UserError> {
        self.tables
            .get(AccountTable::Users, name)?
            .map(|v| decode(name, &v))
            .transpose()
    }

    /// Every account, by name.
    ///
    /// # Errors
    /// Storage failures.
    pub fn list(&self) -> Result<Vec<UserRecord>, UserError> {
        Ok(self
            .tables
            .entries(AccountTable::Users)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<UserRecord>(&v).ok())
            .collect())
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
        let user = if check_name(name).is_err() || password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.get(name)?
        };
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        Ok(self
            .passwords
            .verify(password, stored)
            .then_some(user)
            .flatten())
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
        self.tables.write(|t| {
            // Expired sessions are swept at each login.
            let entries = t.entries(AccountTable::Sessions)?;
            for k in session_keys(entries, |r| r.expires <= now) {
                t.remove(AccountTable::Sessions, &k)?;
            }
            t.insert(AccountTable::Sessions, &token_key(token), &bytes)?;
            Ok::<_, UserError>(())
        })?;
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
        let Some(v) = self.tables.get(AccountTable::Sessions, &token_key(token))? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<SessionRecord>(&v)
            .ok()
            .filter(|rec| rec.expires > Timestamp::now()))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage failures.
    pub fn end_session(&self, token: &str) -> Result<(), UserError> {
        self.tables
            .write(|t| t.remove(AccountTable::Sessions, &token_key(token)))?;
        Ok(())
    }
}

impl aeogate_web::session::SessionStore for Users {
    type Session = SessionRecord;
    type Error = UserError;

    fn session(&self, token: &str) -> Result<Option<SessionRecord>, UserError> {
        Users::session(self, token)
    }

    fn end_session(&self, token: &str) -> Result<(), UserError> {
        Users::end_session(self, token)
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
            Err(UserError::BadPassword(_))
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
