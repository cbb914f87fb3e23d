//! Audit log, staff users and sessions.

use jiff::Timestamp;
use protocol::i18n::Lang;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::{
    AUDIT, SESSIONS, USERS, decode_rows, insert_new, read_after, read_record, update_record,
    write_audit,
};
use crate::model::{AuditEntry, Session, StaffUser, TokenHash};
use crate::store::{
    AuditNote, Edit, Stamp, StoreError, encode, lang_set, set_lang, unknown_user, user_added,
    user_changed,
};

pub(super) fn audit(db: &Database, note: AuditNote<'_>) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    write_audit(&tx, note)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn audit_log(
    db: &Database,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    read_after(db, AUDIT, "audit_v1", after, limit)
}

pub(super) fn add_user(db: &Database, user: &StaffUser) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    insert_new(&tx, USERS, &user.name, user, || {
        StoreError::UserExists(user.name.clone())
    })?;
    write_audit(
        &tx,
        AuditNote::new("central", "user.add", &user_added(user), user.created_at),
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn user(db: &Database, name: &str) -> Result<Option<StaffUser>, StoreError> {
    read_record(db, USERS, "users_v1", name, name)
}

pub(super) fn put_session(db: &Database, token: &TokenHash, s: &Session) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(SESSIONS)?
        .insert(token.as_slice(), encode(s)?.as_slice())?;
    tx.commit()?;
    Ok(())
}

pub(super) fn session(db: &Database, token: &TokenHash) -> Result<Option<Session>, StoreError> {
    read_record(db, SESSIONS, "sessions_v1", token.as_slice(), "session")
}

pub(super) fn delete_session(db: &Database, token: &TokenHash) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.open_table(SESSIONS)?.remove(token.as_slice())?;
    tx.commit()?;
    Ok(())
}

pub(super) fn users(db: &Database) -> Result<Vec<StaffUser>, StoreError> {
    let r = db.begin_read()?;
    decode_rows(r.open_table(USERS)?.iter()?, "users_v1")
}

pub(super) fn update_user(
    db: &Database,
    name: &str,
    by: Stamp<'_>,
    change: &mut Edit<'_, StaffUser>,
) -> Result<StaffUser, StoreError> {
    let tx = db.begin_write()?;
    let (user, what) = update_record(&tx, USERS, "users_v1", name, || unknown_user(name), change)?;
    write_audit(&tx, by.note("user.access", &user_changed(name, &what)))?;
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
    update_record(
        &tx,
        USERS,
        "users_v1",
        name,
        || unknown_user(name),
        set_lang(lang),
    )?;
    write_audit(&tx, AuditNote::new(name, "user.lang", &lang_set(lang), at))?;
    tx.commit()?;
    Ok(())
}
