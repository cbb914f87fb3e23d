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
//!
//! A statement is also prepared afresh once it is [`STATEMENT_MAX_AGE`] old. PostgreSQL
//! plans a prepared statement once for all parameters after its first few runs (a
//! generic plan) and keeps that plan while the tables it reads grow; a plan made while a
//! table was nearly empty can read a whole gate's rows where an index would find a few
//! (measured: a case look-up of an ingest batch grew to 2.6 ms on an empty database
//! filled at 30,000 events/s, against 0.05 ms planned afresh). Preparing again now and
//! then lets the planner see the tables as they are, at the cost of a round trip per
//! statement and connection each time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use postgres::types::{IsNull, ToSql, Type};
use postgres::{Row, Statement, Transaction};

use crate::store::StoreError;

/// Most statements kept per connection; past it the cache starts again empty (the
/// store's statements are a fixed set of texts, far fewer than this).
const MAX_STATEMENTS: usize = 256;

/// How long a prepared statement is run by name before it is prepared (and planned)
/// again.
pub(in crate::store) const STATEMENT_MAX_AGE: Duration = Duration::from_secs(5);

/// Statements prepared on one connection, by SQL text, with when each was prepared.
#[derive(Default)]
pub(in crate::store) struct Statements(HashMap<String, (Statement, Instant)>);

/// The client's statement methods of these names, run on the statement prepared for
/// `sql` ([`Tx::statement`]).
macro_rules! prepared {
    ($($method:ident -> $out:ty,)*) => {$(
        pub(super) fn $method(
            &mut self,
            sql: &str,
            params: Params<'_>,
        ) -> Result<$out, postgres::Error> {
            let s = self.statement(sql)?;
            self.inner.$method(&s, params)
        }
    )*};
}

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
        if let Some((s, at)) = self.statements.0.get(sql)
            && at.elapsed() < STATEMENT_MAX_AGE
        {
            return Ok(s.clone());
        }
        let s = self.inner.prepare(sql)?;
        if self.statements.0.len() >= MAX_STATEMENTS {
            self.statements.0.clear();
        }
        self.statements
            .0
            .insert(sql.to_owned(), (s.clone(), Instant::now()));
        Ok(s)
    }

    prepared! {
        execute -> u64,
        query -> Vec<Row>,
        query_one -> Row,
        query_opt -> Option<Row>,
    }

    /// Runs `sql` through a portal of the transaction and hands its rows to `each`,
    /// fetching `page` rows at a time, so a large answer is never held whole.
    pub(super) fn query_pages(
        &mut self,
        sql: &str,
        params: Params<'_>,
        page: i32,
        each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
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

    /// Runs `COPY … FROM STDIN (FORMAT binary)` (`sql`, prepared once like the other
    /// statements) with `rows`, sent whole; returns the rows copied.
    pub(super) fn copy_rows(&mut self, sql: &str, rows: CopyRows) -> Result<u64, StoreError> {
        self.copy(sql, rows, false)
    }

    /// As [`Tx::copy_rows`], for rows this transaction read as not stored yet: a row
    /// another transaction committed since (a unique violation) makes this transaction
    /// a conflict, run again whole by the store (which then reads that row), rather
    /// than a failure.
    pub(super) fn copy_new_rows(&mut self, sql: &str, rows: CopyRows) -> Result<u64, StoreError> {
        self.copy(sql, rows, true)
    }

    fn copy(&mut self, sql: &str, rows: CopyRows, read_as_new: bool) -> Result<u64, StoreError> {
        use std::io::Write as _;
        let s = self.statement(sql)?;
        let mut w = self.inner.copy_in(&s)?;
        let mut buf = rows.buf;
        // The trailer: a field count of -1.
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        // A write that fails leaves the copy unfinished: the server's reason comes from
        // `finish`, and the write's own is reported when there is none.
        let written = w.write_all(&buf);
        let copied = w.finish().map_err(|e| {
            if read_as_new && e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                super::conflict(&e)
            } else {
                e.into()
            }
        })?;
        written.map_err(|e| StoreError::Backend(format!("COPY data: {e}")))?;
        Ok(copied)
    }

    /// Makes the statements planned in the rest of this transaction read by key, one
    /// index probe per key: for a transaction of look-ups by key lists (joined to
    /// `unnest` of the keys) whose tables grow faster than their statistics (an ingest,
    /// a fold). A table or month partition PostgreSQL has not analysed yet has no
    /// statistics, and with none it takes a list of 500 seqs or 250 transaction ids to
    /// match most rows: it plans a sequential scan, or a scan of the gate's whole index
    /// range filtered by the list, or a hash join over either (measured on a database
    /// filled at 30,000 events/s, before autovacuum's first analyse: 17–28 ms a batch
    /// for one look-up, against 0.2 ms by probes). Sequential scans, hash and merge joins
    /// are off; nested loops over the keys with index probes remain. So are parallel
    /// workers and JIT compilation, which such an estimate also brings in (measured:
    /// 25 ms a look-up, mostly compiling, on the same database). The plan of a statement
    /// prepared again ([`STATEMENT_MAX_AGE`]) is made under these settings too.
    pub(super) fn index_reads_only(&mut self) -> Result<(), postgres::Error> {
        self.inner.batch_execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off;
             SET LOCAL enable_mergejoin = off; SET LOCAL max_parallel_workers_per_gather = 0;
             SET LOCAL jit = off",
        )
    }

    /// Statements without parameters, in one round trip (nothing prepared).
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.inner.batch_execute(sql)
    }
}

/// The rows of one binary `COPY … FROM STDIN (FORMAT binary)`, encoded in memory as they
/// are added and sent in one write by [`Tx::copy_rows`]: PostgreSQL's binary copy format
/// (a signature and two zero words, then per row the field count and each field's length
/// and bytes, as its type's `ToSql` writes them). `postgres`'s own writer runs a future to
/// completion for every row, which cost an ingest about 2 µs an event.
pub(in crate::store) struct CopyRows {
    types: Vec<Type>,
    buf: bytes::BytesMut,
    rows: usize,
}

impl CopyRows {
    /// Whether no row was added.
    pub(in crate::store) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Rows of columns of `types`, none yet.
    pub(in crate::store) fn new(types: &[Type]) -> Self {
        let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        // Flags, then the length of the header extension.
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        Self {
            types: types.to_vec(),
            buf,
            rows: 0,
        }
    }

    /// Makes room for `bytes` more of rows, so that a batch's rows of known size are
    /// encoded without the buffer growing (and being copied) on the way.
    pub(in crate::store) fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// Adds a row: one value per column, of the column's type.
    ///
    /// # Errors
    /// A value of another type than its column's, one that does not encode, or a row of
    /// another width.
    pub(in crate::store) fn push(
        &mut self,
        values: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let bad = |why: String| StoreError::Backend(format!("COPY row: {why}"));
        if values.len() != self.types.len() {
            return Err(bad(format!(
                "{} values for {} columns",
                values.len(),
                self.types.len()
            )));
        }
        let width = i16::try_from(values.len()).map_err(|e| bad(e.to_string()))?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&width.to_be_bytes());
        for (v, ty) in values.iter().zip(&self.types) {
            let at = self.buf.len();
            self.buf.extend_from_slice(&0i32.to_be_bytes());
            let len = match v.to_sql_checked(ty, &mut self.buf) {
                Ok(IsNull::Yes) => Ok(-1),
                Ok(IsNull::No) => i32::try_from(self.buf.len() - at - 4)
                    .map_err(|_| bad("a value over 2 GiB".into())),
                Err(e) => Err(bad(e.to_string())),
            };
            match len {
                Ok(len) => self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes()),
                Err(e) => {
                    // No half row is left behind.
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        }
        self.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_are_postgres_binary_copy_and_refuse_a_row_that_does_not_fit() {
        let mut rows = CopyRows::new(&[Type::TEXT, Type::INT8, Type::TEXT]);
        let none: Option<String> = None;
        rows.push(&[&"G1", &7i64, &none]).expect("a row");
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(b"G1");
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&7i64.to_be_bytes());
        // NULL: a length of -1 and no bytes.
        want.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(&rows.buf[..], &want[..]);
        let before = rows.buf.len();
        // Another width, and a value of another type than its column's.
        assert!(rows.push(&[&"G1", &7i64]).is_err());
        let err = rows.push(&[&"G1", &"7", &none]).expect_err("text for int8");
        assert!(err.to_string().contains("COPY row"), "{err}");
        assert_eq!(
            rows.buf.len(),
            before,
            "nothing of the refused rows is kept"
        );
    }
}
