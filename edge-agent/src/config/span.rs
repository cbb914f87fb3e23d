//! Key paths (`lanes[1].routes.fast`) and the lines they are on, found by walking toml's
//! spanned document, so every error names the line and the key.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Key(&'static str),
    Index(usize),
}

pub(super) struct KeyPath(pub(super) Vec<Seg>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(span: &Range<usize>, at: &Range<usize>) -> bool {
    span.start <= at.start && at.start < span.end.max(span.start + 1)
}

/// The key path of the deepest key whose key or value span contains `at`.
pub(super) fn path_at(table: &DeTable<'_>, at: &Range<usize>) -> String {
    fn walk_value(v: &DeValue<'_>, at: &Range<usize>, out: &mut String) -> bool {
        match v {
            DeValue::Table(t) => walk_table(t, at, out),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    let mark = out.len();
                    out.push_str(&format!("[{i}]"));
                    if walk_value(item.get_ref(), at, out) || contains(&item.span(), at) {
                        return true;
                    }
                    out.truncate(mark);
                }
                false
            }
            _ => false,
        }
    }
    fn walk_table(t: &DeTable<'_>, at: &Range<usize>, out: &mut String) -> bool {
        for (k, v) in t.iter() {
            let mark = out.len();
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k.get_ref());
            if contains(&k.span(), at) {
                return true;
            }
            if walk_value(v.get_ref(), at, out) || contains(&v.span(), at) {
                return true;
            }
            out.truncate(mark);
        }
        false
    }
    let mut out = String::new();
    if walk_table(table, at, &mut out) {
        out
    } else {
        String::new()
    }
}

/// Byte offset of the key at `path`, or of its closest present ancestor.
pub(super) fn offset_of(table: &DeTable<'_>, path: &[Seg]) -> usize {
    let mut best = 0;
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table_ref = Some(table);
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let Some(t) = table_ref.or_else(|| cur.and_then(DeValue::as_table)) else {
                    break;
                };
                let Some((key, val)) = t.iter().find(|(key, _)| key.get_ref() == k) else {
                    break;
                };
                best = key.span().start;
                cur = Some(val.get_ref());
                table_ref = None;
            }
            Seg::Index(i) => {
                let Some(item) = cur.and_then(DeValue::as_array).and_then(|a| a.get(*i)) else {
                    break;
                };
                let span = item.span();
                // An array-of-tables entry may carry an empty span: use its first key.
                let first_key = item
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.iter().map(|(k, _)| k.span().start).min());
                best = if span.is_empty() {
                    first_key.unwrap_or(best)
                } else {
                    span.start
                };
                cur = Some(item.get_ref());
            }
        }
    }
    best
}
