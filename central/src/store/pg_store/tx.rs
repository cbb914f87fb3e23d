//! One store transaction with the connection's prepared statements.
//!
//! The `postgres` client runs a statement given as SQL text in two round trips: it
//! prepares it (Parse, Describe) and then binds and executes it, and forgets the
//! statement afterwards. An ingest batch runs about twenty statements, the same ones every
//! time, so half of its round trips were preparing statements the connection had
//! prepared before. [`Tx`] keeps each statement prepared once per pooled connection
//! ([`Statements`], kept in the connection's r2d2 extensions between transactions) and
//! runs it by name afterwards: one round trip each.
//!
//! A transaction that fails hands its statements back to no one: they are dropped (and
//! closed on the server), and the next transaction on that connection prepares afresh,
//! so a statement never outlives an error it might have been part of.

use std::collections::HashMap;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Row, Statement, Transaction};

/// Most statements kept per connection; past it the cache starts again empty (the
/// store's statements are a fixed set of texts, far fewer than this).
const MAX_STATEMENTS: usize = 256;

/// Statements prepared on one connection, by SQL text.
#[derive(Default)]
pub(in crate::store) struct Statements(HashMap<String, Statement>);

/// A transaction running its statements prepared once per connection.
pub(in crate::store) struct Tx<'a> {
    inner: Transaction<'a>,
    statements: Statements,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Tx<'a> {
    /// `inner` with the connection's `statements` (empty for a connection not yet used,
    /// or where none are kept).
    pub(super) fn new(inner: Transaction<'a>, statements: Statements) -> Self {
        Self { inner, statements }
    }

    /// Commits; returns the statements to keep for the connection's next transaction.
    pub(super) fn commit(self) -> Result<Statements, postgres::Error> {
        self.inner.commit()?;
        Ok(self.statements)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.0.get(sql) {
            return Ok(s.clone());
        }
        let s = self.inner.prepare(sql)?;
        if self.statements.0.len() >= MAX_STATEMENTS {
            self.statements.0.clear();
        }
        self.statements.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.inner.execute(&s, params)
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.inner.query(&s, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.inner.query_one(&s, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.inner.query_opt(&s, params)
    }

    /// Runs `sql` through a portal of the transaction and hands its rows to `each`,
    /// fetching `page` rows at a time, so a large answer is never held whole.
    pub(super) fn query_pages(
        &mut self,
        sql: &str,
        params: Params<'_>,
        page: i32,
        each: &mut dyn FnMut(Row) -> Result<(), crate::store::StoreError>,
    ) -> Result<(), crate::store::StoreError> {
        let s = self.statement(sql)?;
        let portal = self.inner.bind(&s, params)?;
        let page = page.max(1);
        // Bounded: every turn but the last takes `page` rows off a finite answer.
        loop {
            let rows = self.inner.query_portal(&portal, page)?;
            let last = rows.len() < usize::try_from(page).unwrap_or(usize::MAX);
            for r in rows {
                each(r)?;
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Starts `COPY … FROM STDIN (FORMAT binary)` (`sql`, prepared once like the other
    /// statements) for rows of `types`; the rows go out as they are written, and the
    /// copy is complete when the writer's `finish` returns.
    pub(super) fn copy_in_binary(
        &mut self,
        sql: &str,
        types: &[Type],
    ) -> Result<BinaryCopyInWriter<'_>, postgres::Error> {
        let s = self.statement(sql)?;
        let w = self.inner.copy_in(&s)?;
        Ok(BinaryCopyInWriter::new(w, types))
    }

    /// Statements without parameters, in one round trip (nothing prepared).
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.inner.batch_execute(sql)
    }
}

/// JSON text sent as a `json` value as it is (the server parses and checks it), where
/// `serde_json::Value` would be a tree built only to be written out again.
#[derive(Debug)]
pub(in crate::store) struct JsonText<'a>(pub &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}
