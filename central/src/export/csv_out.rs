//! The one way central writes CSV: RFC 4180 quoting (the `csv` crate), and every cell that
//! a spreadsheet would run as a formula defused (OWASP "CSV Injection"). The events
//! export and the programme figures both write through [`CsvOut`], so no CSV central
//! produces can carry a live formula, whatever text an agent, an import or a registry
//! name put into it.

use std::borrow::Cow;
use std::io;

/// A cell as it is written: a cell starting with `=`, `+`, `-`, `@`, tab or CR gets a
/// leading `'`, which spreadsheets show as text instead of evaluating.
#[must_use]
pub fn defuse(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// A CSV writer whose every cell passes through [`defuse`].
#[derive(Debug)]
pub struct CsvOut<W: io::Write>(csv::Writer<W>);

impl<W: io::Write> CsvOut<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> Self {
        Self(csv::Writer::from_writer(out))
    }

    /// Writes one row.
    ///
    /// # Errors
    /// When writing fails.
    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let cells: Vec<S> = cells.into_iter().collect();
        self.0
            .write_record(cells.iter().map(|c| defuse(c.as_ref()).into_owned()))
    }

    /// Flushes what is buffered.
    ///
    /// # Errors
    /// When writing fails.
    pub fn finish(mut self) -> Result<(), csv::Error> {
        self.0.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_formula_prefix_is_defused_and_plain_text_is_kept() {
        for bad in [
            "=HYPERLINK(\"x\")",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(defuse(bad), format!("'{bad}"), "{bad:?}");
        }
        assert_eq!(defuse("Hafen Import GmbH"), "Hafen Import GmbH");
        assert_eq!(defuse(""), "");
    }

    #[test]
    fn rows_are_quoted_and_defused() {
        let mut buf = Vec::new();
        let mut w = CsvOut::new(&mut buf);
        w.row(["a,b", "=1+1", "ok"]).expect("row");
        w.finish().expect("flush");
        assert_eq!(String::from_utf8(buf).expect("utf8"), "\"a,b\",'=1+1,ok\n");
    }
}
