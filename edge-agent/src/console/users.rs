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
    /// A disabled account cannot log in and its sessions are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A live session as stored (under the hash of its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Account name.
    pub user: String,
    /// The account's role (read from the account on every lookup, so a changed role
    /// applies to an open session at once; a provisioned session without an account keeps
    /// the role it was stored with).
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
    /// No account of this name.
    #[error("console account {0:?} does not exist")]
    UnknownUser(String),
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
            disabled: false,
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

    /// Changes an existing account's role and/or disabled state, and ends its sessions
    /// (they would be refused or re-roled anyway; ending them makes the officer log in
    /// again under the new terms).
    ///
    /// # Errors
    /// [`UserError::UnknownUser`]; storage failures.
    pub fn set_access(
        &self,
        name: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<UserRecord, UserError> {
        self.tables.write(|t| {
            let users = t.entries(AccountTable::Users)?;
            let Some((_, v)) = users.into_iter().find(|(k, _)| k == name) else {
                return Err(UserError::UnknownUser(name.to_owned()));
            };
            let mut rec: UserRecord = decode(name, &v)?;
            if let Some(r) = role {
                rec.role = r;
            }
            if let Some(d) = disabled {
                rec.disabled = d;
            }
            rec.updated_at = Timestamp::now();
            let bytes = serde_json::to_vec(&rec).map_err(db)?;
            t.insert(AccountTable::Users, name, &bytes)?;
            let entries = t.entries(AccountTable::Sessions)?;
            for k in session_keys(entries, |r| r.user == name) {
                t.remove(AccountTable::Sessions, &k)?;
            }
            Ok(rec)
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
            .flatten()
            .filter(|u| !u.disabled))
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
}

impl aeogate_web::session::SessionStore for Users {
    type Session = SessionRecord;
    type Error = UserError;

    /// The live session of a token, if any. The account is read again on every lookup: a
    /// disabled account's session is refused, and the session carries the account's
    /// current role.
    ///
    /// # Errors
    /// Storage failures.
    fn session(&self, token: &str) -> Result<Option<SessionRecord>, UserError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let Some(v) = self.tables.get(AccountTable::Sessions, &token_key(token))? else {
            return Ok(None);
        };
        let Some(mut rec) = serde_json::from_slice::<SessionRecord>(&v)
            .ok()
            .filter(|rec| rec.expires > Timestamp::now())
        else {
            return Ok(None);
        };
        match self.get(&rec.user)? {
            Some(u) if u.disabled => Ok(None),
            Some(u) => {
                rec.role = u.role;
                Ok(Some(rec))
            }
            // A provisioned session ([`Users::insert_session`]) need not have an account;
            // it keeps the role it was stored with.
            None => Ok(Some(rec)),
        }
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage failures.
    fn end_session(&self, token: &str) -> Result<(), UserError> {
        self.tables
            .write(|t| t.remove(AccountTable::Sessions, &token_key(token)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aeogate_web::session::SessionStore as _;
    use protocol::schema::GateId;

    fn users(dir: &std::path::Path) -> Users {
        let store =
            Store::open(&dir.join("s.redb"), GateId::parse("G1").expect("gate")).expect("store");
        Users::open(&store).expect("users")
    }

    #[test]
    fn a_disabled_account_is_refused_and_a_role_change_reaches_the_session_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let u = users(dir.path());
        u.put("ana", "correct horse 1", Role::Officer, Lang::En)
            .expect("put");
        let ana = u.get("ana").expect("get").expect("ana");
        let (token, _) = u.start_session(&ana).expect("session");
        // A session whose record still says officer gets the account's current role.
        let mut changed = ana.clone();
        changed.role = Role::Supervisor;
        let bytes = serde_json::to_vec(&changed).expect("json");
        u.tables
            .write(|t| t.insert(AccountTable::Users, "ana", &bytes))
            .expect("write");
        let s = u.session(&token).expect("lookup").expect("live");
        assert_eq!(s.role, Role::Supervisor);
        // Disabling ends the sessions and refuses the password.
        let rec = u.set_access("ana", None, Some(true)).expect("disable");
        assert!(rec.disabled);
        assert!(u.session(&token).expect("lookup").is_none());
        assert!(
            u.authenticate("ana", "correct horse 1")
                .expect("auth")
                .is_none()
        );
        // A session stored for a disabled account (e.g. provisioned) is refused too.
        let t2 = "x".repeat(40);
        u.insert_session(&t2, "ana", Role::Officer, Lang::En, SESSION_TTL)
            .expect("insert");
        assert!(u.session(&t2).expect("lookup").is_none());
        let rec = u
            .set_access("ana", Some(Role::Operator), Some(false))
            .expect("enable");
        assert_eq!((rec.role, rec.disabled), (Role::Operator, false));
        assert!(
            u.authenticate("ana", "correct horse 1")
                .expect("auth")
                .is_some()
        );
        assert!(matches!(
            u.set_access("bob", None, Some(true)),
            Err(UserError::UnknownUser(_))
        ));
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
