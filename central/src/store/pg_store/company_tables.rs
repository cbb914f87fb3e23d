//! The programme portal's companies, each one document keyed by its operator id, and
//! the bytes of their uploaded documents keyed by SHA-256.

use super::tx::Tx;
use jiff::Timestamp;

use super::{from_json, to_json, write_audit};
use crate::model::StaffUser;
use crate::portal::Company;
use crate::store::{StoreError, company_added, unknown_company};

pub(super) fn add_company(
    tx: &mut Tx<'_>,
    company: &Company,
    user: Option<&StaffUser>,
    actor: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let key = company.operator.to_string();
    let n = tx.execute(
        "INSERT INTO companies (operator, value) VALUES ($1, $2) ON CONFLICT (operator) DO NOTHING",
        &[&key, &to_json(company)?],
    )?;
    if n == 0 {
        return Err(StoreError::Refused(format!(
            "company {key} is already registered"
        )));
    }
    if let Some(u) = user {
        let n = tx.execute(
            "INSERT INTO users (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&u.name, &to_json(u)?],
        )?;
        if n == 0 {
            return Err(StoreError::UserExists(u.name.clone()));
        }
    }
    write_audit(tx, actor, "company.add", &company_added(company, user), at)
}

pub(super) fn company(tx: &mut Tx<'_>, key: &str) -> Result<Option<Company>, StoreError> {
    tx.query_opt("SELECT value FROM companies WHERE operator = $1", &[&key])?
        .map(|r| from_json("companies", key, r.get(0)))
        .transpose()
}

pub(super) fn companies(tx: &mut Tx<'_>) -> Result<Vec<Company>, StoreError> {
    tx.query(
        "SELECT operator, value FROM companies ORDER BY operator",
        &[],
    )?
    .into_iter()
    .map(|r| from_json("companies", r.get::<_, String>(0), r.get(1)))
    .collect()
}

pub(super) fn update_company(
    tx: &mut Tx<'_>,
    key: &str,
    actor: &str,
    at: Timestamp,
    change: &mut (dyn FnMut(&mut Company) -> Result<String, StoreError> + Send),
) -> Result<Company, StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT value FROM companies WHERE operator = $1 FOR UPDATE",
        &[&key],
    )?
    else {
        return Err(unknown_company(key));
    };
    let mut company: Company = from_json("companies", key, row.get(0))?;
    let what = change(&mut company)?;
    tx.execute(
        "UPDATE companies SET value = $2 WHERE operator = $1",
        &[&key, &to_json(&company)?],
    )?;
    write_audit(
        tx,
        actor,
        "company.change",
        &format!("company {key}: {what}"),
        at,
    )?;
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
