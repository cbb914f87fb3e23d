//! Registry authority: importing operator, MRA and consignment files into change-log
//! entries, and cutting the signed batches agents replicate.
//!
//! # Import
//! CSV (RFC 4180: comma-separated, `"` quoting, header row naming the columns in any
//! order) or JSON (an array of records, or JSON Lines). Every row is parsed into the
//! shared schema type; a bad row is reported with its line number and the reason, and the
//! good rows are kept. Columns are documented in docs/central.md.
//!
//! # Batches and sequences
//! Sequences are central's *global* log sequence. A batch for port P covers the range
//! `(after_seq, last_seq]` of the log and omits the changes not meant for P (consignments
//! of other ports), so an agent's replica sequence stays contiguous even though it never
//! sees those changes. A consignment that moves away from P reaches P as a
//! `REMOVE_CONSIGNMENT` carrying the seq of the change that moved it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    AeoStatus, Authorisation, Change, ChangeBatch, Consignment, ContactPoint, DeclaredContainer,
    Hold, HoldKind, MraRecord, Party, PartyRole, RegistryRecord, SCHEMA_VERSION, SequencedChange,
    check_version,
};
use protocol::seal::{ESealId, SealNumber};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::store::LoggedChange;
use crate::store_error::StoreError;

/// Why a registry operation (import, status change, replication batch) failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("operator {0} is not in the registry")]
    UnknownOperator(String),
    /// A change [`protocol::registry`]'s rule refuses (other than an unknown operator).
    #[error("registry change refused: {0}")]
    Refused(String),
    /// A malformed request: missing reason or actor, bad port, newer schema version.
    #[error("{0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("importing {path}: {source}")]
    Import {
        path: std::path::PathBuf,
        source: ImportError,
    },
    #[error("encoding a change batch: {0}")]
    Encode(#[from] serde_json::Error),
    /// A chunked snapshot's chunk files could not be written or read.
    #[error("chunked snapshot: {0}")]
    Snapshot(String),
    /// Central is making as many snapshots as it makes at once; the same request may
    /// succeed shortly.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownOperator(o) => Self::UnknownOperator(o),
            StoreError::Refused(why) => Self::Refused(why),
            other => Self::Store(other),
        }
    }
}

/// Most log entries one batch covers; the agent asks again for the rest.
pub const MAX_BATCH_CHANGES: usize = 10_000;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Operators,
    Mras,
    Consignments,
}

impl std::str::FromStr for ImportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "operators" => Ok(Self::Operators),
            "mras" => Ok(Self::Mras),
            "consignments" => Ok(Self::Consignments),
            other => Err(format!(
                "unknown import kind {other:?}: expected operators, mras or consignments"
            )),
        }
    }
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// A refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line where the row starts.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A parsed file: one change per good row, and the refused rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub kind: ImportKind,
    pub rows: usize,
    pub changes: Vec<Change>,
    pub errors: Vec<RowError>,
}

/// Problems with the file as a whole (nothing is imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file is empty")]
    Empty,
    #[error("line {line}: unknown column {column:?}; known columns for {kind}: {known}")]
    UnknownColumn {
        line: usize,
        column: String,
        kind: &'static str,
        known: String,
    },
    #[error("line 1: required column {0:?} is missing from the header")]
    MissingColumn(&'static str),
    #[error("cannot tell what the file holds; pass --kind operators|mras|consignments")]
    UnknownKind,
    #[error("line {line}: the file is not a JSON array or JSON Lines: {why}")]
    NotJson { line: usize, why: String },
    #[error("line {line}: unterminated quoted field")]
    UnterminatedQuote { line: usize },
    #[error("line {line}: not readable as CSV: {why}")]
    Csv { line: usize, why: String },
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

/// Splits RFC 4180 text into records (the `csv` crate), each with the line it starts on.
/// Quoted fields may contain commas, `""` and line breaks; CRLF and LF both end a record;
/// blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    // The reader's positions start where the previous record's bytes ended (before its
    // line break and any blank lines), so the line a record starts on is counted here.
    let mut lines = LineCounter::new(text);
    loop {
        let before = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(true) => {
                let start = record.position().map_or(before, csv::Position::byte);
                out.push((
                    lines.record_line(start),
                    record.iter().map(str::to_owned).collect(),
                ));
            }
            Ok(false) => break,
            Err(e) => {
                let start = e.position().map_or(before, csv::Position::byte);
                return Err(ImportError::Csv {
                    line: lines.record_line(start),
                    why: e.to_string(),
                });
            }
        }
    }
    // The csv crate ends a quoted field left open at the end of the input there; a
    // registry file cut short must not import a row made of the rest of the file.
    if let Some((line, _)) = out.last()
        && ends_inside_quotes(lines.last_record_text())
    {
        return Err(ImportError::UnterminatedQuote { line: *line });
    }
    Ok(out)
}

/// Line numbers of records, from byte offsets that only grow.
struct LineCounter<'a> {
    text: &'a str,
    counted_to: usize,
    line: usize,
    last_start: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            counted_to: 0,
            line: 1,
            last_start: 0,
        }
    }

    /// The 1-based line of the first byte at or after `from` that is not a line break.
    fn record_line(&mut self, from: u64) -> usize {
        let from = usize::try_from(from)
            .unwrap_or(self.text.len())
            .clamp(self.counted_to, self.text.len());
        let skipped = self.text.as_bytes()[from..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let start = from + skipped;
        self.line += self.text.as_bytes()[self.counted_to..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.counted_to = start;
        self.last_start = start;
        self.line
    }

    fn last_record_text(&self) -> &'a str {
        self.text.get(self.last_start..).unwrap_or("")
    }
}

/// Whether the last record (`tail`, from its first byte to the end of the input) leaves a
/// quoted field open: a quote opens a field only as its first character, and inside one
/// `""` is a quote and a lone `"` closes it.
fn ends_inside_quotes(tail: &str) -> bool {
    let mut quoted = false;
    let mut field_start = true;
    let mut chars = tail.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, _) => {}
            (false, '"') if field_start => quoted = true,
            (false, ',' | '\n' | '\r') => {
                field_start = true;
                continue;
            }
            (false, _) => {}
        }
        field_start = false;
    }
    quoted
}

const OPERATOR_COLUMNS: &[&str] = &[
    "operator_id",
    "name",
    "authorisations",
    "status",
    "status_since",
    "valid_from",
    "valid_to",
    "roles",
    "contact_name",
    "contact_phone",
    "contact_email",
    "linked_ids",
    "source",
    "as_of",
];
const MRA_COLUMNS: &[&str] = &[
    "recognising",
    "partner",
    "in_force_from",
    "in_force_to",
    "security_only",
    "name",
];
const CONSIGNMENT_COLUMNS: &[&str] = &[
    "id",
    "container",
    "seals",
    "eseals",
    "parties",
    "holds",
    "ports",
    "as_of",
];

fn kind_name(k: ImportKind) -> &'static str {
    match k {
        ImportKind::Operators => "operators",
        ImportKind::Mras => "mras",
        ImportKind::Consignments => "consignments",
    }
}

fn columns(k: ImportKind) -> &'static [&'static str] {
    match k {
        ImportKind::Operators => OPERATOR_COLUMNS,
        ImportKind::Mras => MRA_COLUMNS,
        ImportKind::Consignments => CONSIGNMENT_COLUMNS,
    }
}

fn required(k: ImportKind) -> &'static [&'static str] {
    match k {
        ImportKind::Operators => &[
            "operator_id",
            "name",
            "authorisations",
            "status",
            "valid_from",
        ],
        ImportKind::Mras => &["recognising", "partner", "in_force_from", "name"],
        ImportKind::Consignments => &["id", "container", "ports"],
    }
}

/// One CSV row by column name.
struct Row<'a> {
    cols: &'a BTreeMap<&'static str, usize>,
    fields: &'a [String],
}

impl Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.cols
            .get(name)
            .and_then(|&i| self.fields.get(i))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
    fn req(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name} is empty"))
    }
    fn list(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .map(|s| {
                s.split(';')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn ts(&self, name: &str) -> Result<Option<Timestamp>, String> {
        self.get(name).map(|s| parse_ts(name, s)).transpose()
    }
}

fn parse_ts(name: &str, s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    // A bare date means midnight UTC.
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("{name} {s:?} is not an RFC 3339 time or a YYYY-MM-DD date"))
}

fn enum_value<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase()))
        .map_err(|_| format!("{what} {s:?} is not a known value"))
}

fn operator(what: &str, s: &str) -> Result<OperatorId, String> {
    OperatorId::parse(s).map_err(|e| format!("{what} {s:?}: {e}"))
}

fn operator_row(r: &Row<'_>, now: Timestamp) -> Result<Change, String> {
    let authorisations = r
        .list("authorisations")
        .into_iter()
        .map(|a| enum_value::<Authorisation>("authorisation", a))
        .collect::<Result<Vec<_>, _>>()?;
    if authorisations.is_empty() {
        return Err("authorisations is empty".into());
    }
    let valid_from = r.ts("valid_from")?.ok_or("valid_from is empty")?;
    let contact_point = r.get("contact_name").map(|n| ContactPoint {
        name: n.to_owned(),
        phone: r.get("contact_phone").map(str::to_owned),
        email: r.get("contact_email").map(str::to_owned),
    });
    let record = RegistryRecord {
        v: SCHEMA_VERSION,
        operator: operator("operator_id", r.req("operator_id")?)?,
        name: r.req("name")?.to_owned(),
        authorisations,
        status: enum_value("status", r.req("status")?)?,
        status_since: r.ts("status_since")?.unwrap_or(valid_from),
        valid_from,
        valid_to: r.ts("valid_to")?,
        roles: r
            .list("roles")
            .into_iter()
            .map(|x| enum_value::<PartyRole>("role", x))
            .collect::<Result<_, _>>()?,
        contact_point,
        linked_ids: r
            .list("linked_ids")
            .into_iter()
            .map(|x| operator("linked id", x))
            .collect::<Result<_, _>>()?,
        source: r.get("source").unwrap_or("import").to_owned(),
        as_of: r.ts("as_of")?.unwrap_or(now),
    };
    check_operator(&record)?;
    Ok(Change::UpsertOperator { record })
}

fn programme(what: &str, s: &str) -> Result<Programme, String> {
    Programme::from_code(s).ok_or_else(|| format!("{what} {s:?} is not a known programme code"))
}

fn mra_row(r: &Row<'_>) -> Result<Change, String> {
    let security_only = match r
        .get("security_only")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("true" | "yes" | "1") => true,
        Some("false" | "no" | "0") => false,
        Some(other) => return Err(format!("security_only {other:?} is not true or false")),
    };
    let mra = MraRecord {
        v: SCHEMA_VERSION,
        recognising: programme("recognising", r.req("recognising")?)?,
        partner: programme("partner", r.req("partner")?)?,
        in_force_from: r.ts("in_force_from")?.ok_or("in_force_from is empty")?,
        in_force_to: r.ts("in_force_to")?,
        security_only,
        name: r.req("name")?.to_owned(),
    };
    check_mra(&mra)?;
    Ok(Change::UpsertMra { mra })
}

/// `ROLE=OPERATOR_ID=Name` (operator id may be empty).
fn party(s: &str) -> Result<Party, String> {
    let mut it = s.splitn(3, '=');
    let role = enum_value::<PartyRole>("party role", it.next().unwrap_or_default().trim())?;
    let op = it.next().map(str::trim).filter(|x| !x.is_empty());
    let name = it.next().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(format!("party {s:?}: expected ROLE=OPERATOR_ID=Name"));
    }
    Ok(Party {
        role,
        operator: op.map(|o| operator("party operator", o)).transpose()?,
        name: name.to_owned(),
    })
}

/// `KIND=REFERENCE=note`.
fn hold(s: &str) -> Result<Hold, String> {
    let mut it = s.splitn(3, '=');
    let kind = enum_value::<HoldKind>("hold kind", it.next().unwrap_or_default().trim())?;
    let reference = it.next().map(str::trim).filter(|x| !x.is_empty());
    let reference = reference.ok_or_else(|| format!("hold {s:?}: expected KIND=REFERENCE=note"))?;
    Ok(Hold {
        kind,
        reference: reference.to_owned(),
        note: it.next().map(str::trim).unwrap_or_default().to_owned(),
    })
}

fn consignment_row(r: &Row<'_>, now: Timestamp) -> Result<Consignment, String> {
    let c = r.req("container")?;
    let number = ContainerNumber::parse(c).map_err(|e| format!("container {c:?}: {e}"))?;
    let seals = r
        .list("seals")
        .into_iter()
        .map(|s| SealNumber::parse(s).map_err(|e| format!("seal {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let eseals = r
        .list("eseals")
        .into_iter()
        .map(|s| ESealId::parse(s).map_err(|e| format!("e-seal {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let c = Consignment {
        v: SCHEMA_VERSION,
        id: r.req("id")?.to_owned(),
        containers: vec![DeclaredContainer {
            number,
            seals,
            eseals,
        }],
        parties: r
            .list("parties")
            .into_iter()
            .map(party)
            .collect::<Result<_, _>>()?,
        holds: r
            .list("holds")
            .into_iter()
            .map(hold)
            .collect::<Result<_, _>>()?,
        ports: r.list("ports").into_iter().map(str::to_owned).collect(),
        as_of: r.ts("as_of")?.unwrap_or(now),
    };
    check_consignment(&c)?;
    Ok(c)
}

fn check_operator(r: &RegistryRecord) -> Result<(), String> {
    check_version(r.v).map_err(|e| e.to_string())?;
    if r.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    if r.authorisations.is_empty() {
        return Err("authorisations is empty".into());
    }
    if r.valid_to.is_some_and(|to| to <= r.valid_from) {
        return Err("valid_to is not after valid_from".into());
    }
    Ok(())
}

fn check_mra(m: &MraRecord) -> Result<(), String> {
    check_version(m.v).map_err(|e| e.to_string())?;
    if m.recognising == m.partner {
        return Err("recognising and partner are the same programme".into());
    }
    if m.in_force_to.is_some_and(|to| to <= m.in_force_from) {
        return Err("in_force_to is not after in_force_from".into());
    }
    Ok(())
}

fn check_consignment(c: &Consignment) -> Result<(), String> {
    check_version(c.v).map_err(|e| e.to_string())?;
    if c.id.trim().is_empty() || c.id.len() > 64 {
        return Err("id must be 1 to 64 characters".into());
    }
    if c.containers.is_empty() {
        return Err("no containers".into());
    }
    if c.ports.is_empty() || c.ports.iter().any(|p| p.trim().is_empty()) {
        return Err("ports is empty".into());
    }
    Ok(())
}

fn parse_csv(
    text: &str,
    kind: Option<ImportKind>,
    now: Timestamp,
    progress: &mut dyn FnMut(usize),
) -> Result<Parsed, ImportError> {
    let records = csv_records(text)?;
    let Some(((hline, header), rows)) = records.split_first() else {
        return Err(ImportError::Empty);
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let kind = match kind {
        Some(k) => k,
        None if names.iter().any(|n| n == "operator_id") => ImportKind::Operators,
        None if names.iter().any(|n| n == "recognising") => ImportKind::Mras,
        None if names.iter().any(|n| n == "container") => ImportKind::Consignments,
        None => return Err(ImportError::UnknownKind),
    };
    let known = columns(kind);
    let mut cols: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        match known.iter().find(|k| *k == n) {
            Some(k) => {
                cols.insert(k, i);
            }
            None => {
                return Err(ImportError::UnknownColumn {
                    line: *hline,
                    column: n.clone(),
                    kind: kind_name(kind),
                    known: known.join(", "),
                });
            }
        }
    }
    if let Some(missing) = required(kind).iter().find(|r| !cols.contains_key(*r)) {
        return Err(ImportError::MissingColumn(missing));
    }
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    // Consignment rows with the same id are one consignment with several containers.
    let mut consignments: Vec<(usize, Consignment)> = Vec::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for (n, (line, fields)) in rows.iter().enumerate() {
        progress(n + 1);
        let row = Row {
            cols: &cols,
            fields,
        };
        let parsed = match kind {
            ImportKind::Operators => operator_row(&row, now).map(Some),
            ImportKind::Mras => mra_row(&row).map(Some),
            ImportKind::Consignments => consignment_row(&row, now).and_then(|c| {
                match by_id.get(&c.id) {
                    Some(&i) => {
                        let (_, first) = &mut consignments[i];
                        if first.ports != c.ports || first.parties != c.parties || first.holds != c.holds {
                            return Err(format!(
                                "consignment {} repeats with other parties, holds or ports than its first row",
                                c.id
                            ));
                        }
                        first.containers.extend(c.containers);
                    }
                    None => {
                        by_id.insert(c.id.clone(), consignments.len());
                        consignments.push((*line, c));
                    }
                }
                Ok(None)
            }),
        };
        match parsed {
            Ok(Some(ch)) => changes.push(ch),
            Ok(None) => {}
            Err(reason) => errors.push(RowError {
                line: *line,
                reason,
            }),
        }
    }
    changes.extend(
        consignments
            .into_iter()
            .map(|(_, consignment)| Change::UpsertConsignment { consignment }),
    );
    Ok(Parsed {
        kind,
        rows: rows.len(),
        changes,
        errors,
    })
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn json_items(text: &str) -> Result<Vec<(usize, &str)>, ImportError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| ImportError::NotJson {
                line: e.line(),
                why: e.to_string(),
            })?;
        let base = text.as_ptr() as usize;
        Ok(items
            .into_iter()
            .map(|raw| {
                let offset = (raw.get().as_ptr() as usize).saturating_sub(base);
                (line_of(text, offset), raw.get())
            })
            .collect())
    } else {
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect())
    }
}

fn json_kind(first: &str) -> Option<ImportKind> {
    let v: serde_json::Value = serde_json::from_str(first).ok()?;
    let o = v.as_object()?;
    if o.contains_key("operator") {
        Some(ImportKind::Operators)
    } else if o.contains_key("recognising") {
        Some(ImportKind::Mras)
    } else if o.contains_key("containers") {
        Some(ImportKind::Consignments)
    } else {
        None
    }
}

fn parse_json(
    text: &str,
    kind: Option<ImportKind>,
    progress: &mut dyn FnMut(usize),
) -> Result<Parsed, ImportError> {
    let items = json_items(text)?;
    let Some(&(_, first)) = items.first() else {
        return Err(ImportError::Empty);
    };
    let kind = kind
        .or_else(|| json_kind(first))
        .ok_or(ImportError::UnknownKind)?;
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for (n, (line, item)) in items.iter().enumerate() {
        progress(n + 1);
        let parsed = match kind {
            ImportKind::Operators => serde_json::from_str::<RegistryRecord>(item)
                .map_err(|e| e.to_string())
                .and_then(|record| {
                    check_operator(&record)?;
                    Ok(Change::UpsertOperator { record })
                }),
            ImportKind::Mras => serde_json::from_str::<MraRecord>(item)
                .map_err(|e| e.to_string())
                .and_then(|mra| {
                    check_mra(&mra)?;
                    Ok(Change::UpsertMra { mra })
                }),
            ImportKind::Consignments => serde_json::from_str::<Consignment>(item)
                .map_err(|e| e.to_string())
                .and_then(|consignment| {
                    check_consignment(&consignment)?;
                    Ok(Change::UpsertConsignment { consignment })
                }),
        };
        match parsed {
            Ok(c) => changes.push(c),
            Err(reason) => errors.push(RowError {
                line: *line,
                reason,
            }),
        }
    }
    Ok(Parsed {
        kind,
        rows: items.len(),
        changes,
        errors,
    })
}

/// Parses an import file. `progress` is called with the number of rows read so far.
///
/// # Errors
/// [`ImportError`] when the file as a whole cannot be read; bad rows are in
/// [`Parsed::errors`] instead.
pub fn parse_import(
    text: &str,
    format: Format,
    kind: Option<ImportKind>,
    now: Timestamp,
    progress: &mut dyn FnMut(usize),
) -> Result<Parsed, ImportError> {
    match format {
        Format::Csv => parse_csv(text, kind, now, progress),
        Format::Json => parse_json(text, kind, progress),
    }
}

// ---------------------------------------------------------------------------------------
// batches
// ---------------------------------------------------------------------------------------

/// The change as port `port` receives it, or `None` when it is not meant for the port.
#[must_use]
pub fn for_port(logged: &LoggedChange, port: &str) -> Option<SequencedChange> {
    let concerns = logged
        .ports
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p == port));
    if !concerns {
        return None;
    }
    let change = match &logged.change {
        Change::UpsertConsignment { consignment }
            if !consignment.ports.iter().any(|p| p == port) =>
        {
            Change::RemoveConsignment {
                id: consignment.id.clone(),
            }
        }
        other => other.clone(),
    };
    Some(SequencedChange {
        seq: logged.seq,
        change,
    })
}

/// The batch for `port` after `after`, from the log entries read after it (at most
/// [`MAX_BATCH_CHANGES`]). `last_seq` is the last log entry covered, whether or not the
/// port receives it.
#[must_use]
pub fn batch_for_port(port: &str, after: u64, logged: &[LoggedChange]) -> Option<ChangeBatch> {
    let last = logged.last()?;
    Some(ChangeBatch {
        v: SCHEMA_VERSION,
        snapshot: false,
        after_seq: after,
        last_seq: last.seq,
        port: port.to_owned(),
        as_of: last.at,
        changes: logged.iter().filter_map(|l| for_port(l, port)).collect(),
    })
}

/// A status change, as a log entry.
#[must_use]
pub fn set_status_change(
    op: &OperatorId,
    status: AeoStatus,
    reason: &str,
    actor: &str,
    at: Timestamp,
) -> Change {
    Change::SetStatus {
        operator: op.clone(),
        status,
        reason: reason.to_owned(),
        actor: actor.to_owned(),
        at,
    }
}

/// The ports a consignment change concerns: the consignment's ports now and, when it
/// replaced an earlier version, that version's (a port it left must hear of it too).
#[must_use]
pub fn consignment_ports(new: &Consignment, old: Option<Consignment>) -> Vec<String> {
    let mut ports: std::collections::BTreeSet<String> = new.ports.iter().cloned().collect();
    if let Some(o) = old {
        ports.extend(o.ports);
    }
    ports.into_iter().collect()
}

/// The key under which the stores index the consignments carrying `container`.
pub(crate) fn container_index_key(container: impl std::fmt::Display) -> String {
    format!("c:{container}")
}

/// The key under which the stores index the consignments bound for `port`.
pub(crate) fn port_index_key(port: &str) -> String {
    format!("p:{port}")
}

/// Every index key of a consignment: one per container, one per port.
pub(crate) fn consignment_index_keys(c: &Consignment) -> Vec<String> {
    let mut keys: Vec<String> = c
        .containers
        .iter()
        .map(|d| container_index_key(d.number))
        .collect();
    keys.extend(c.ports.iter().map(|p| port_index_key(p)));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T00:00:00Z".parse().expect("ts")
    }

    #[test]
    fn csv_quotes_commas_and_line_breaks() {
        let recs = csv_records("a,b\n\"x, y\",\"he said \"\"hi\"\"\nbye\"\n3,4\n").expect("csv");
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[1],
            (2, vec!["x, y".to_owned(), "he said \"hi\"\nbye".to_owned()])
        );
        assert_eq!(recs[2].0, 4, "line numbers count the embedded break");
        assert_eq!(
            csv_records("a\n\"open"),
            Err(ImportError::UnterminatedQuote { line: 2 })
        );
    }

    #[test]
    fn csv_skips_blank_lines_and_takes_crlf_with_line_numbers() {
        let recs = csv_records("a,b\r\n\r\n1,2\r\n\n3,\"x\"\"y\"\n").expect("csv");
        assert_eq!(
            recs,
            vec![
                (1, vec!["a".to_owned(), "b".to_owned()]),
                (3, vec!["1".to_owned(), "2".to_owned()]),
                (5, vec!["3".to_owned(), "x\"y".to_owned()]),
            ]
        );
    }

    #[test]
    fn csv_quote_inside_an_unquoted_field_is_a_character_not_an_open_field() {
        let recs = csv_records("a,b\n5\" pallet,x\n").expect("csv");
        assert_eq!(recs[1], (2, vec!["5\" pallet".to_owned(), "x".to_owned()]));
        assert_eq!(
            csv_records("a,b\n1,\"open\n2,3\n"),
            Err(ImportError::UnterminatedQuote { line: 2 })
        );
    }

    #[test]
    fn unknown_csv_column_is_refused_by_name() {
        let err = parse_import("operator_id,nmae\n", Format::Csv, None, now(), &mut |_| {})
            .expect_err("unknown column");
        assert!(err.to_string().contains("\"nmae\""), "{err}");
    }

    #[test]
    fn consignment_rows_with_one_id_merge_their_containers() {
        let text = "id,container,seals,ports\nB1,CSQU3054383,A1234;A1235,P1\nB1,MSCU1234566,,P1\n";
        let p = parse_import(text, Format::Csv, None, now(), &mut |_| {}).expect("parse");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let [Change::UpsertConsignment { consignment }] = p.changes.as_slice() else {
            panic!("one consignment expected: {:?}", p.changes);
        };
        assert_eq!(consignment.containers.len(), 2);
        assert_eq!(consignment.containers[0].seals.len(), 2);
    }

    #[test]
    fn consignment_leaving_a_port_reaches_it_as_a_removal() {
        let c = Consignment {
            v: SCHEMA_VERSION,
            id: "B1".into(),
            containers: vec![],
            parties: vec![],
            holds: vec![],
            ports: vec!["P2".into()],
            as_of: now(),
        };
        let logged = LoggedChange {
            seq: 9,
            at: now(),
            actor: "t".into(),
            change: Change::UpsertConsignment { consignment: c },
            ports: Some(vec!["P1".into(), "P2".into()]),
        };
        let p1 = for_port(&logged, "P1").expect("P1 had it");
        assert_eq!(p1.change, Change::RemoveConsignment { id: "B1".into() });
        assert!(for_port(&logged, "P3").is_none());
        let b = batch_for_port("P3", 4, std::slice::from_ref(&logged)).expect("batch");
        assert_eq!((b.after_seq, b.last_seq, b.changes.len()), (4, 9, 0));
    }
}
