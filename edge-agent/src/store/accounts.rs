//! The console's two tables in the agent's file — accounts and sessions — behind an
//! interface that reaches nothing else: the console never holds the raw database, so it
//! cannot touch the journal or the replica.
//!
//! Tables: `console_users_v1` (name → account JSON) and `console_sessions_v1` (hex
//! SHA-256 of a session token → session JSON). What the values mean is the console's
//! business ([`crate::console::users`]); a write transaction is all or nothing.

use redb::{Table, TableDefinition};

use super::Store;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("console_users_v1");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("console_sessions_v1");

/// One of the console's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTable {
    /// Accounts by name.
    Users,
    /// Sessions by the hash of their token.
    Sessions,
}

impl AccountTable {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Self::Users => USERS,
            Self::Sessions => SESSIONS,
        }
    }
}

/// The console's tables in a [`Store`]. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct AccountTables {
    store: Store,
}

/// The console's tables inside one write transaction ([`AccountTables::write`]).
pub struct AccountWrite<'a> {
    users: Table<'a, &'static str, &'static [u8]>,
    sessions: Table<'a, &'static str, &'static [u8]>,
}

impl std::fmt::Debug for AccountWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountWrite").finish_non_exhaustive()
    }
}

impl Store {
    /// The console's account and session tables (created when missing).
    ///
    /// # Errors
    /// The tables cannot be created.
    pub fn accounts(&self) -> Result<AccountTables, redb::Error> {
        let w = self.database().begin_write()?;
        w.open_table(USERS)?;
        w.open_table(SESSIONS)?;
        w.commit()?;
        Ok(AccountTables {
            store: self.clone(),
        })
    }
}

fn entries_of(
    t: &impl redb::ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

impl AccountTables {
    /// The value under `key`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn get(&self, table: AccountTable, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        let r = self.store.database().begin_read()?;
        let t = r.open_table(table.def())?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every key and value, in key order.
    ///
    /// # Errors
    /// Storage failures.
    pub fn entries(&self, table: AccountTable) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        let r = self.store.database().begin_read()?;
        entries_of(&r.open_table(table.def())?)
    }

    /// Runs `f` in one write transaction, committed when it returns `Ok` (and durable
    /// then), abandoned when it returns an error.
    ///
    /// # Errors
    /// `f`'s error, or the storage failure converted into it.
    pub fn write<R, E: From<redb::Error>>(
        &self,
        f: impl FnOnce(&mut AccountWrite<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let w = self.store.database().begin_write()?;
        let out = {
            let mut tables = AccountWrite {
                users: w.open_table(USERS).map_err(redb::Error::from)?,
                sessions: w.open_table(SESSIONS).map_err(redb::Error::from)?,
            };
            f(&mut tables)?
        };
        w.commit().map_err(redb::Error::from)?;
        Ok(out)
    }
}

impl<'a> AccountWrite<'a> {
    fn table(&mut self, t: AccountTable) -> &mut Table<'a, &'static str, &'static [u8]> {
        match t {
            AccountTable::Users => &mut self.users,
            AccountTable::Sessions => &mut self.sessions,
        }
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn insert(&mut self, t: AccountTable, key: &str, value: &[u8]) -> Result<(), redb::Error> {
        self.table(t).insert(key, value)?;
        Ok(())
    }

    /// Removes `key` (nothing when absent).
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove(&mut self, t: AccountTable, key: &str) -> Result<(), redb::Error> {
        self.table(t).remove(key)?;
        Ok(())
    }

    /// Every key and value, in key order, as this transaction sees them.
    ///
    /// # Errors
    /// Storage failures.
    pub fn entries(&mut self, t: AccountTable) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        entries_of(self.table(t))
    }
}
