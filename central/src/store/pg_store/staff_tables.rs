//! Audit log, staff users and sessions.

use super::tx::Tx;
use jiff::Timestamp;
use protocol::i18n::Lang;

use super::{from_json, insert_new, json_rows, json_rows_after, to_json, update_row, write_audit};
use crate::model::{AuditEntry, Session, StaffUser, TokenHash};
use crate::store::{
    AuditNote, Edit, Stamp, StoreError, lang_set, set_lang, unknown_user, user_added, user_changed,
};

/// [`Store::audit`](crate::store::Store::audit): one entry in a transaction of its own.
pub(super) use super::write_audit as audit;

pub(super) fn audit_log(
    tx: &mut Tx<'_>,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    json_rows_after(tx, "audit", "id", after, limit)
}

pub(super) fn add_user(tx: &mut Tx<'_>, user: &StaffUser) -> Result<(), StoreError> {
    insert_new(tx, "users", "name", &user.name, user, || {
        StoreError::UserExists(user.name.clone())
    })?;
    write_audit(
        tx,
        AuditNote::new("central", "user.add", &user_added(user), user.created_at),
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
    json_rows::<String, _>(
        tx,
        "users",
        "SELECT name, value FROM users ORDER BY name",
        &[],
    )
}

pub(super) fn update_user(
    tx: &mut Tx<'_>,
    name: &str,
    by: Stamp<'_>,
    change: &mut Edit<'_, StaffUser>,
) -> Result<StaffUser, StoreError> {
    let (user, what) = update_row(tx, "users", "name", name, || unknown_user(name), change)?;
    write_audit(tx, by.note("user.access", &user_changed(name, &what)))?;
    Ok(user)
}

pub(super) fn set_user_lang(
    tx: &mut Tx<'_>,
    name: &str,
    lang: Lang,
    at: Timestamp,
) -> Result<(), StoreError> {
    update_row(
        tx,
        "users",
        "name",
        name,
        || unknown_user(name),
        set_lang(lang),
    )?;
    write_audit(tx, AuditNote::new(name, "user.lang", &lang_set(lang), at))
}
