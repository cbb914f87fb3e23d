//! Audit log, staff users and sessions.

use std::ops::Bound;

use jiff::Timestamp;
use protocol::i18n::Lang;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::{AUDIT, SESSIONS, USERS, write_audit};
use crate::model::{AuditEntry, Session, StaffUser, TokenHash};
use crate::store::{StoreError, decode, encode};

pub(super) fn audit(
    db: &Database,
    actor: &str,
    action: &str,
    detail: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    write_audit(&tx, actor, action, detail, at)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn audit_log(
    db: &Database,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(AUDIT)?;
    let mut out = Vec::new();
    for row in t
        .range((Bound::Excluded(after), Bound::Unbounded))?
        .take(limit)
    {
        let (k, v) = row?;
        out.push(decode("audit_v1", k.value(), v.value())?);
    }
    Ok(out)
}

pub(super) fn add_user(db: &Database, user: &StaffUser) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut t = tx.open_table(USERS)?;
        if t.get(user.name.as_str())?.is_some() {
            return Err(StoreError::UserExists(user.name.clone()));
        }
        t.insert(user.name.as_str(), encode(user)?.as_slice())?;
    }
    write_audit(
        &tx,
        "central",
        "user.add",
        &format!("user {} (role {})", user.name, user.role),
        user.created_at,
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn user(db: &Database, name: &str) -> Result<Option<StaffUser>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(USERS)?;
    let v = t.get(name)?;
    v.map(|g| decode("users_v1", name, g.value())).transpose()
}

pub(super) fn put_session(db: &Database, token: &TokenHash, s: &Session) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(SESSIONS)?
        .insert(token.as_slice(), encode(s)?.as_slice())?;
    tx.commit()?;
    Ok(())
}

pub(super) fn session(db: &Database, token: &TokenHash) -> Result<Option<Session>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(SESSIONS)?;
    let v = t.get(token.as_slice())?;
    v.map(|g| decode("sessions_v1", "session", g.value()))
        .transpose()
}

pub(super) fn delete_session(db: &Database, token: &TokenHash) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(SESSIONS)?.remove(token.as_slice())?;
    tx.commit()?;
    Ok(())
}

pub(super) fn users(db: &Database) -> Result<Vec<StaffUser>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(USERS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.push(decode("users_v1", k.value(), v.value())?);
    }
    Ok(out)
}

pub(super) fn update_user(
    db: &Database,
    name: &str,
    actor: &str,
    at: Timestamp,
    change: &mut (dyn FnMut(&mut StaffUser) -> Result<String, StoreError> + Send),
) -> Result<StaffUser, StoreError> {
    let tx = db.begin_write()?;
    let user = {
        let mut t = tx.open_table(USERS)?;
        let mut user: StaffUser = match t.get(name)? {
            Some(g) => decode("users_v1", name, g.value())?,
            None => return Err(StoreError::UnknownUser(name.to_owned())),
        };
        let what = change(&mut user)?;
        t.insert(name, encode(&user)?.as_slice())?;
        write_audit(
            &tx,
            actor,
            "user.access",
            &format!("user {name}: {what}"),
            at,
        )?;
        user
    };
    tx.commit()?;
    Ok(user)
}

pub(super) fn set_user_lang(
    db: &Database,
    name: &str,
    lang: Lang,
    at: Timestamp,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut t = tx.open_table(USERS)?;
        let mut user: StaffUser = match t.get(name)? {
            Some(g) => decode("users_v1", name, g.value())?,
            None => return Err(StoreError::UnknownUser(name.to_owned())),
        };
        user.lang = lang;
        t.insert(name, encode(&user)?.as_slice())?;
    }
    write_audit(
        &tx,
        name,
        "user.lang",
        &format!("language {}", lang.tag()),
        at,
    )?;
    tx.commit()?;
    Ok(())
}
