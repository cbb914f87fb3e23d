//! The programme portal's companies, each one document keyed by its operator id, and
//! the bytes of their uploaded documents keyed by SHA-256.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::{
    COMPANIES, DOCUMENTS, USERS, decode_rows, insert_new, read_record, update_record, write_audit,
};
use crate::model::StaffUser;
use crate::portal::Company;
use crate::store::{
    Edit, Stamp, StoreError, company_added, company_changed, company_exists, unknown_company,
};

pub(super) fn add_company(
    db: &Database,
    company: &Company,
    user: Option<&StaffUser>,
    by: Stamp<'_>,
) -> Result<(), StoreError> {
    let key = company.operator.to_string();
    let tx = db.begin_write()?;
    insert_new(&tx, COMPANIES, &key, company, || company_exists(&key))?;
    if let Some(u) = user {
        insert_new(&tx, USERS, &u.name, u, || {
            StoreError::UserExists(u.name.clone())
        })?;
    }
    write_audit(&tx, by.note("company.add", &company_added(company, user)))?;
    tx.commit()?;
    Ok(())
}

pub(super) fn company(db: &Database, key: &str) -> Result<Option<Company>, StoreError> {
    read_record(db, COMPANIES, "companies_v1", key, key)
}

pub(super) fn companies(db: &Database) -> Result<Vec<Company>, StoreError> {
    let r = db.begin_read()?;
    decode_rows(r.open_table(COMPANIES)?.iter()?, "companies_v1")
}

pub(super) fn update_company(
    db: &Database,
    key: &str,
    by: Stamp<'_>,
    change: &mut Edit<'_, Company>,
) -> Result<Company, StoreError> {
    let tx = db.begin_write()?;
    let (company, what) = update_record(
        &tx,
        COMPANIES,
        "companies_v1",
        key,
        || unknown_company(key),
        change,
    )?;
    write_audit(&tx, by.note("company.change", &company_changed(key, &what)))?;
    tx.commit()?;
    Ok(company)
}

pub(super) fn put_document(db: &Database, sha256: &str, body: &[u8]) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut t = tx.open_table(DOCUMENTS)?;
        if t.get(sha256)?.is_none() {
            t.insert(sha256, body)?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn document(db: &Database, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(DOCUMENTS)?;
    Ok(t.get(sha256)?.map(|g| g.value().to_vec()))
}
