//! Log set-up shared by the aeogate binaries (edge agent, central, the `aeogate` CLI).
//!
//! # Layout
//! - [`init`]: installs the global subscriber on standard error; [`init_daemon`], the
//!   daemons' set-up from their `--json-logs` flag.
//! - [`filter_from`]: `RUST_LOG` (or the default) as a filter; an invalid value is an
//!   error that names it, never a silent fallback.
//! - [`JsonLines`]: one JSON object per event; a field recorded with `?` whose value
//!   prints as a JSON array (a list of codes, of names) is written as that array.
//!
//! Colour codes are written only when standard error is a terminal, so logs captured by
//! journald or redirected to a file are plain text.

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("RUST_LOG={value:?} is not a valid log filter: {why}")]
    InvalidFilter { value: String, why: String },
    #[error("RUST_LOG is not valid UTF-8")]
    NotUnicode,
    #[error("a log subscriber is already installed in this process")]
    AlreadySet,
}

/// Log format on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// The filter for `RUST_LOG`'s value (`None`: not set, so [`DEFAULT_FILTER`]).
///
/// # Errors
/// [`LogError::InvalidFilter`] naming the value when it does not parse.
pub fn filter_from(value: Option<&str>) -> Result<EnvFilter, LogError> {
    match value {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(v) => EnvFilter::builder()
            .parse(v)
            .map_err(|e| LogError::InvalidFilter {
                value: v.to_owned(),
                why: e.to_string(),
            }),
    }
}

fn env_filter() -> Result<EnvFilter, LogError> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) => filter_from(Some(&v)),
        Err(std::env::VarError::NotPresent) => filter_from(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(LogError::NotUnicode),
    }
}

/// Installs the process's subscriber: events to standard error, filtered by `RUST_LOG`.
///
/// # Errors
/// When `RUST_LOG` is invalid, or a subscriber is already installed.
pub fn init(format: Format) -> Result<(), LogError> {
    let filter = env_filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        Format::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        Format::Json => builder
            .with_ansi(false)
            .event_format(JsonLines)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .try_init(),
    };
    result.map_err(|_| LogError::AlreadySet)
}

/// A daemon's set-up: [`init`] in JSON lines when its `--json-logs` flag is given, else in
/// text. When that fails it writes `<program>: <why>` to standard error and returns the
/// exit code the daemon ends with (2, as for a bad command line).
///
/// # Errors
/// The exit code, when [`init`] fails.
pub fn init_daemon(program: &str, json_lines: bool) -> Result<(), std::process::ExitCode> {
    let format = if json_lines {
        Format::Json
    } else {
        Format::Text
    };
    init(format).map_err(|e| {
        eprintln!("{program}: {e}");
        std::process::ExitCode::from(2)
    })
}

/// One JSON object per event: `timestamp`, `level`, `target`, `fields` (with `message`),
/// and `spans` (each span's name and fields, outermost first).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FieldsToJson::default();
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(jiff::Timestamp::now().to_string()),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        line.insert("fields".into(), Value::Object(fields.0));
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut obj = Map::new();
                    obj.insert("name".into(), Value::String(span.name().to_owned()));
                    let ext = span.extensions();
                    if let Some(f) = ext.get::<FormattedFields<N>>()
                        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(f.as_str())
                    {
                        obj.extend(m);
                    }
                    Value::Object(obj)
                })
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Event fields as JSON values: numbers and booleans as such, a `?` field that prints as
/// a JSON array as that array, everything else as a string.
#[derive(Debug, Default)]
struct FieldsToJson(Map<String, Value>);

impl FieldsToJson {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for FieldsToJson {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let value = if text.starts_with('[') {
            match serde_json::from_str::<Value>(&text) {
                Ok(list @ Value::Array(_)) => list,
                _ => Value::String(text),
            }
        } else {
            Value::String(text)
        };
        self.put(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_lines(f: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(JsonLines)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    #[test]
    fn list_fields_are_json_arrays() {
        let lines = json_lines(|| {
            let reasons = vec!["SEAL_MISMATCH", "OPERATOR_SUSPENDED"];
            tracing::info!(lane = "L1", reasons = ?reasons, count = 2u64, "decided");
        });
        let fields = &lines[0]["fields"];
        assert_eq!(
            fields["reasons"],
            serde_json::json!(["SEAL_MISMATCH", "OPERATOR_SUSPENDED"])
        );
        assert_eq!(fields["lane"], "L1");
        assert_eq!(fields["count"], 2);
        assert_eq!(fields["message"], "decided");
        assert_eq!(lines[0]["level"], "INFO");
    }

    #[test]
    fn debug_values_that_are_not_json_stay_strings() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum Code {
            SealMismatch,
        }
        let lines = json_lines(|| {
            tracing::warn!(codes = ?[Code::SealMismatch], "x");
        });
        assert_eq!(lines[0]["fields"]["codes"], "[SealMismatch]");
    }

    #[test]
    fn span_fields_are_carried() {
        let lines = json_lines(|| {
            let span = tracing::info_span!("transaction", lane = "L2");
            let _g = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(lines[0]["spans"][0]["name"], "transaction");
        assert_eq!(lines[0]["spans"][0]["lane"], "L2");
    }

    #[test]
    fn an_invalid_filter_is_an_error_naming_it() {
        let err = filter_from(Some("info,edge_agent=loud")).expect_err("invalid level");
        assert!(err.to_string().contains("info,edge_agent=loud"), "{err}");
        assert!(filter_from(Some("edge_agent=debug,info")).is_ok());
        assert!(filter_from(None).is_ok());
    }
}
