//! Staff: users, logins behind the rate limit, sessions.

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;

use super::Central;
use crate::auth::{self, AuthError};
use crate::model::{Role, Session, StaffUser};
use crate::store::{AuditNote, Stamp};

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

fn poisoned() -> AuthError {
    AuthError::Store(crate::store::StoreError::Backend(
        "login limiter lock poisoned".into(),
    ))
}

/// Refuses a user name that is not 1 to 64 letters, digits, '.', '_', '-' or '@' (staff
/// and company accounts alike).
///
/// # Errors
/// [`AuthError::Invalid`] saying why.
pub(super) fn check_user_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(AuthError::Invalid(format!(
            "user name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )));
    }
    Ok(())
}

impl Central {
    /// Adds a staff user (password hashed with Argon2id using the configured cost).
    /// `role` is `analyst` or `admin` ([`Role::parse`], which also reads the legacy names).
    ///
    /// # Errors
    /// When the user exists, the name is malformed, the role is unknown or the password is
    /// too short or too easy to guess ([`auth::check_password_strength`]).
    pub fn add_user(&self, name: &str, password: &str, role: &str) -> Result<(), AuthError> {
        let Some(role) = Role::parse(role) else {
            return Err(AuthError::Invalid(format!(
                "role {role:?}: expected analyst or admin"
            )));
        };
        check_user_name(name)?;
        auth::check_password_strength(password, name)?;
        let phc = self.inner.passwords.hash(password)?;
        self.inner.store.add_user(&StaffUser {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            password_phc: phc,
            created_at: Timestamp::now(),
            lang: Lang::default(),
            disabled: false,
            company: None,
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
    ) -> Result<LoginResult, AuthError> {
        let now = Timestamp::now();
        // Check and count in one step before the password is verified, so concurrent
        // guesses cannot all pass the check before any failure is recorded.
        let reserved = self
            .inner
            .limiter
            .lock()
            .map_err(|_| poisoned())?
            .reserve(name, addr, now);
        if let Err(wait) = reserved {
            let from = addr.map_or_else(|| "unknown address".to_owned(), |a| a.to_string());
            let detail = format!("too many failed logins (from {from})");
            let note = AuditNote::new(name, "login.throttled", &detail, now);
            self.inner.store.audit(note)?;
            metrics::counter!("central_auth_failures_total", "who" => "throttled").increment(1);
            return Ok(LoginResult::Throttled(wait));
        }
        Ok(match self.login(name, password)? {
            Some((token, s)) => {
                self.inner
                    .limiter
                    .lock()
                    .map_err(|_| poisoned())?
                    .succeeded(name, addr, now);
                LoginResult::Ok(token, s)
            }
            None => LoginResult::Refused,
        })
    }

    /// Ends a session (logout), audited.
    ///
    /// # Errors
    /// Store errors.
    pub fn logout(&self, token: &str) -> Result<(), AuthError> {
        let hash = auth::hash_token(token);
        if let Some(s) = self.inner.store.session(&hash)? {
            self.inner.store.delete_session(&hash)?;
            self.inner.store.audit(AuditNote::new(
                &s.user,
                "logout",
                "session closed",
                Timestamp::now(),
            ))?;
        }
        Ok(())
    }

    /// Every staff user.
    ///
    /// # Errors
    /// Store errors.
    pub fn users(&self) -> Result<Vec<StaffUser>, AuthError> {
        Ok(self.inner.store.users()?)
    }

    /// A staff user by name.
    ///
    /// # Errors
    /// Store errors.
    pub fn user(&self, name: &str) -> Result<Option<StaffUser>, AuthError> {
        Ok(self.inner.store.user(name)?)
    }

    /// Sets a user's dashboard language.
    ///
    /// # Errors
    /// When the user does not exist, or store errors.
    pub fn set_user_lang(&self, name: &str, lang: Lang) -> Result<(), AuthError> {
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
    pub fn login(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<(String, Session)>, AuthError> {
        let Some(user) = self.inner.store.user(name)? else {
            // The same Argon2 work as for a wrong password, so the answer's timing does
            // not tell which user names exist.
            let _ = self.inner.passwords.verify(password, None);
            self.inner.store.audit(AuditNote::new(
                name,
                "login.failed",
                "unknown user",
                Timestamp::now(),
            ))?;
            return Ok(None);
        };
        if !self
            .inner
            .passwords
            .verify(password, Some(&user.password_phc))
        {
            self.inner.store.audit(AuditNote::new(
                name,
                "login.failed",
                "wrong password",
                Timestamp::now(),
            ))?;
            return Ok(None);
        }
        if user.disabled {
            self.inner.store.audit(AuditNote::new(
                name,
                "login.failed",
                "user disabled",
                Timestamp::now(),
            ))?;
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
            .audit(AuditNote::new(name, "login", "session opened", now))?;
        Ok(Some((token, session)))
    }

    /// The live session a bearer token names, if any. The user is read again on every
    /// call: a disabled or removed user's session is refused, and the session carries the
    /// user's current role, so changes take effect on open sessions at once.
    ///
    /// # Errors
    /// Store errors.
    pub fn session(&self, token: &str) -> Result<Option<Session>, AuthError> {
        let Some(mut s) = self
            .inner
            .store
            .session(&auth::hash_token(token))?
            .filter(|s| s.expires_at > Timestamp::now())
        else {
            return Ok(None);
        };
        match self.inner.store.user(&s.user)? {
            Some(u) if !u.disabled => {
                s.role = u.role;
                Ok(Some(s))
            }
            _ => Ok(None),
        }
    }

    /// Disables (`true`) or re-enables a staff user, audited as by `actor`. A disabled
    /// user's open sessions are refused from their next request.
    ///
    /// # Errors
    /// An unknown user, or store errors.
    pub fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
        actor: &str,
    ) -> Result<(), AuthError> {
        self.inner
            .store
            .update_user(name, Stamp::new(actor, Timestamp::now()), &mut |u| {
                u.disabled = disabled;
                Ok(if disabled { "disabled" } else { "enabled" }.to_owned())
            })?;
        Ok(())
    }

    /// Changes a staff user's role (`analyst` or `admin`), audited as by `actor`; open
    /// sessions get the new role from their next request.
    ///
    /// # Errors
    /// An unknown role or user, or store errors.
    pub fn set_user_role(&self, name: &str, role: &str, actor: &str) -> Result<(), AuthError> {
        let Some(role) = Role::parse(role) else {
            return Err(AuthError::Invalid(format!(
                "role {role:?}: expected analyst or admin"
            )));
        };
        self.inner
            .store
            .update_user(name, Stamp::new(actor, Timestamp::now()), &mut |u| {
                // A company account never becomes staff: it belongs to its company.
                if u.company.is_some() {
                    return Err(crate::store::StoreError::Refused(format!(
                        "{name} is a company account of the programme portal"
                    )));
                }
                let was = std::mem::replace(&mut u.role, role.as_str().to_owned());
                Ok(format!("role {was} -> {role}"))
            })?;
        Ok(())
    }
}

/// Staff sessions over central's store (the web crate's session trait).
impl aeogate_web::session::SessionStore for Central {
    type Session = Session;
    type Error = AuthError;

    fn session(&self, token: &str) -> Result<Option<Session>, AuthError> {
        Central::session(self, token)
    }

    fn end_session(&self, token: &str) -> Result<(), AuthError> {
        self.logout(token)
    }
}
