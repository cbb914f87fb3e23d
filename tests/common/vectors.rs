//! Reading the repository's test vectors (`tests/vectors/*.tsv`, sources in its README).
//! Shared by the protocol crate's vector tests and the CLI tests, which include this file
//! by path, so both read the files alike.

use std::collections::HashMap;
use std::path::Path;

/// Rows of the vector file at `path` as column name → value (comment lines start with `#`;
/// the first other line is the header). A missing, headerless or empty file fails the
/// test: vectors are never skipped.
pub fn rows(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("{}: no header", path.display()))
        .split('\t')
        .collect();
    let rows: Vec<_> = lines
        .map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            header
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    (
                        (*h).to_owned(),
                        cells.get(i).copied().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{}: no rows", path.display());
    rows
}
