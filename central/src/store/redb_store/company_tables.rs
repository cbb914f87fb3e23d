//! The programme portal's companies, each one document keyed by its operator id.

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::{COMPANIES, USERS, write_audit};
use crate::model::StaffUser;
use crate::portal::Company;
use crate::store::{StoreError, company_added, decode, encode, unknown_company};

pub(super) fn add_company(
    db: &Database,
    company: &Company,
    user: Option<&StaffUser>,
    actor: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let key = company.operator.to_string();
    let tx = db.begin_write()?;
    {
        let mut t = tx.open_table(COMPANIES)?;
        if t.get(key.as_str())?.is_some() {
            return Err(StoreError::Refused(format!(
                "company {key} is already registered"
            )));
        }
        t.insert(key.as_str(), encode(company)?.as_slice())?;
        if let Some(u) = user {
            let mut users = tx.open_table(USERS)?;
            if users.get(u.name.as_str())?.is_some() {
                return Err(StoreError::UserExists(u.name.clone()));
            }
            users.insert(u.name.as_str(), encode(u)?.as_slice())?;
        }
    }
    write_audit(&tx, actor, "company.add", &company_added(company, user), at)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn company(db: &Database, key: &str) -> Result<Option<Company>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(COMPANIES)?;
    let v = t.get(key)?;
    v.map(|g| decode("companies_v1", key, g.value()))
        .transpose()
}

pub(super) fn companies(db: &Database) -> Result<Vec<Company>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(COMPANIES)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.push(decode("companies_v1", k.value(), v.value())?);
    }
    Ok(out)
}

pub(super) fn update_company(
    db: &Database,
    key: &str,
    actor: &str,
    at: Timestamp,
    change: &mut (dyn FnMut(&mut Company) -> Result<String, StoreError> + Send),
) -> Result<Company, StoreError> {
    let tx = db.begin_write()?;
    let company = {
        let mut t = tx.open_table(COMPANIES)?;
        let mut company: Company = match t.get(key)? {
            Some(g) => decode("companies_v1", key, g.value())?,
            None => return Err(unknown_company(key)),
        };
        let what = change(&mut company)?;
        t.insert(key, encode(&company)?.as_slice())?;
        write_audit(
            &tx,
            actor,
            "company.change",
            &format!("company {key}: {what}"),
            at,
        )?;
        company
    };
    tx.commit()?;
    Ok(company)
}
