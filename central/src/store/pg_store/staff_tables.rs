//! Audit log, staff users and sessions.

use super::tx::Tx;
use jiff::Timestamp;
use protocol::i18n::Lang;

use super::{from_json, to_json, write_audit};
use crate::model::{AuditEntry, Session, StaffUser, TokenHash};
use crate::store::StoreError;

pub(super) fn audit_log(
    tx: &mut Tx<'_>,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    tx.query(
        "SELECT id, value FROM audit WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &limit],
    )?
    .into_iter()
    .map(|r| from_json("audit", r.get::<_, i64>(0), r.get(1)))
    .collect()
}

pub(super) fn add_user(tx: &mut Tx<'_>, user: &StaffUser) -> Result<(), StoreError> {
    let n = tx.execute(
        "INSERT INTO users (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&user.name, &to_json(user)?],
    )?;
    if n == 0 {
        return Err(StoreError::UserExists(user.name.clone()));
    }
    write_audit(
        tx,
        "central",
        "user.add",
        &format!("user {} (role {})", user.name, user.role),
        user.created_at,
    )
}

pub(super) fn user(tx: &mut Tx<'_>, name: &str) -> Result<Option<StaffUser>, StoreError> {
    tx.query_opt("SELECT value FROM users WHERE name = $1", &[&name])?
        .map(|r| from_json("users", name, r.get(0)))
        .transpose()
}

pub(super) fn put_session(
    tx: &mut Tx<'_>,
    token: &TokenHash,
    s: &Session,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sessions (token, value) VALUES ($1, $2)
         ON CONFLICT (token) DO UPDATE SET value = EXCLUDED.value",
        &[&token.as_slice(), &to_json(s)?],
    )?;
    Ok(())
}

pub(super) fn session(tx: &mut Tx<'_>, token: &TokenHash) -> Result<Option<Session>, StoreError> {
    tx.query_opt(
        "SELECT value FROM sessions WHERE token = $1",
        &[&token.as_slice()],
    )?
    .map(|r| from_json("sessions", "session", r.get(0)))
    .transpose()
}

pub(super) fn delete_session(tx: &mut Tx<'_>, token: &TokenHash) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM sessions WHERE token = $1",
        &[&token.as_slice()],
    )?;
    Ok(())
}

pub(super) fn users(tx: &mut Tx<'_>) -> Result<Vec<StaffUser>, StoreError> {
    tx.query("SELECT name, value FROM users ORDER BY name", &[])?
        .into_iter()
        .map(|r| from_json("users", r.get::<_, String>(0), r.get(1)))
        .collect()
}

pub(super) fn update_user(
    tx: &mut Tx<'_>,
    name: &str,
    actor: &str,
    at: Timestamp,
    change: &mut (dyn FnMut(&mut StaffUser) -> Result<String, StoreError> + Send),
) -> Result<StaffUser, StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT value FROM users WHERE name = $1 FOR UPDATE",
        &[&name],
    )?
    else {
        return Err(StoreError::UnknownUser(name.to_owned()));
    };
    let mut user: StaffUser = from_json("users", name, row.get(0))?;
    let what = change(&mut user)?;
    tx.execute(
        "UPDATE users SET value = $2 WHERE name = $1",
        &[&name, &to_json(&user)?],
    )?;
    write_audit(
        tx,
        actor,
        "user.access",
        &format!("user {name}: {what}"),
        at,
    )?;
    Ok(user)
}

pub(super) fn set_user_lang(
    tx: &mut Tx<'_>,
    name: &str,
    lang: Lang,
    at: Timestamp,
) -> Result<(), StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT value FROM users WHERE name = $1 FOR UPDATE",
        &[&name],
    )?
    else {
        return Err(StoreError::UnknownUser(name.to_owned()));
    };
    let mut user: StaffUser = from_json("users", name, row.get(0))?;
    user.lang = lang;
    tx.execute(
        "UPDATE users SET value = $2 WHERE name = $1",
        &[&name, &to_json(&user)?],
    )?;
    write_audit(
        tx,
        name,
        "user.lang",
        &format!("language {}", lang.tag()),
        at,
    )
}
