//! The programme portal's companies, each one document keyed by its operator id, and
//! the bytes of their uploaded documents keyed by SHA-256.

use super::tx::Tx;

use super::{from_json, insert_new, json_rows, update_row, write_audit};
use crate::model::StaffUser;
use crate::portal::Company;
use crate::store::{
    Edit, Stamp, StoreError, company_added, company_changed, company_exists, unknown_company,
};

pub(super) fn add_company(
    tx: &mut Tx<'_>,
    company: &Company,
    user: Option<&StaffUser>,
    by: Stamp<'_>,
) -> Result<(), StoreError> {
    let key = company.operator.to_string();
    insert_new(tx, "companies", "operator", &key, company, || {
        company_exists(&key)
    })?;
    if let Some(u) = user {
        insert_new(tx, "users", "name", &u.name, u, || {
            StoreError::UserExists(u.name.clone())
        })?;
    }
    write_audit(tx, by.note("company.add", &company_added(company, user)))
}

pub(super) fn company(tx: &mut Tx<'_>, key: &str) -> Result<Option<Company>, StoreError> {
    tx.query_opt("SELECT value FROM companies WHERE operator = $1", &[&key])?
        .map(|r| from_json("companies", key, r.get(0)))
        .transpose()
}

pub(super) fn companies(tx: &mut Tx<'_>) -> Result<Vec<Company>, StoreError> {
    let sql = "SELECT operator, value FROM companies ORDER BY operator";
    json_rows::<String, _>(tx, "companies", sql, &[])
}

pub(super) fn update_company(
    tx: &mut Tx<'_>,
    key: &str,
    by: Stamp<'_>,
    change: &mut Edit<'_, Company>,
) -> Result<Company, StoreError> {
    let missing = || unknown_company(key);
    let (company, what) = update_row(tx, "companies", "operator", key, missing, change)?;
    write_audit(tx, by.note("company.change", &company_changed(key, &what)))?;
    Ok(company)
}

pub(super) fn put_document(tx: &mut Tx<'_>, sha256: &str, body: &[u8]) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO documents (sha256, body) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
        &[&sha256, &body],
    )?;
    Ok(())
}

pub(super) fn document(tx: &mut Tx<'_>, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(tx
        .query_opt("SELECT body FROM documents WHERE sha256 = $1", &[&sha256])?
        .map(|r| r.get(0)))
}
