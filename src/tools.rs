//! Identifier tools for installers and integrators: `aeogate epc decode` and
//! `aeogate container check`.
//!
//! Both take values as arguments or, with none, one value per line on standard input
//! (a trailing `\r` is dropped), and print one JSON object per value to standard output,
//! in input order. Every input line gets an output line: a blank line is reported as
//! invalid with the parser's "empty" error, and a line that is not UTF-8 as invalid too,
//! so line N of the output always answers line N of the input. Exit status 0 when every
//! value was valid, 1 when any was not. If the reader of standard output goes away
//! (`… | head`), the tool stops quietly.
//!
//! Output shapes (fields as they appear in the URIs, as strings, so leading zeros survive):
//!
//! ```text
//! {"input":…,"valid":true,"scheme":"sgtin-96","uri":…,"tag_uri":…,"hex":…,"bits":96,
//!  "filter":3,"partition":5,"company_prefix":"0614141","item_reference":"812345",
//!  "serial":"6789","gs1_element_string":"(01) 80614141123458 (21) 6789"}
//! {"input":…,"valid":true,"scheme":"raw","uri":"urn:epc:raw:64.x…","tag_uri":…,"hex":…,"bits":64}
//! {"input":…,"valid":true,"owner":"CSQ","category":"U","serial":"305438","check_digit":3,
//!  "canonical":"CSQU3054383"}
//! {"input":…,"valid":false,"error":"<reason>"}
//! ```
//!
//! Nothing is allocated per line: URIs, digits and error messages are written straight
//! into the buffered output through `Display`.

use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use protocol::container::ContainerNumber;
use protocol::epc::{Digits, Epc};
use serde::{Serialize, Serializer};

/// `aeogate epc decode [HEX...]`.
///
/// # Errors
/// Reading standard input or writing standard output failed (other than a closed pipe).
pub fn epc_decode(values: &[String]) -> anyhow::Result<ExitCode> {
    run(values, |input, out| match Epc::from_hex(input) {
        Ok(epc) => write_line(out, &EpcRecord::new(input, &epc)).map(|()| true),
        Err(e) => write_invalid(out, input, e),
    })
}

/// `aeogate container check [CODE...]`.
///
/// # Errors
/// Reading standard input or writing standard output failed (other than a closed pipe).
pub fn container_check(values: &[String]) -> anyhow::Result<ExitCode> {
    run(values, |input, out| match ContainerNumber::parse(input) {
        Ok(number) => {
            let record = ContainerRecord {
                input,
                valid: true,
                owner: number.owner(),
                category: Shown(number.category().letter()),
                serial: number.serial(),
                check_digit: number.check_digit(),
                canonical: number.as_str(),
            };
            write_line(out, &record).map(|()| true)
        }
        Err(e) => write_invalid(out, input, e),
    })
}

type Out<'a> = BufWriter<io::StdoutLock<'a>>;

/// Feeds every value (arguments, or standard input lines) to `one`, which writes one JSON
/// line and says whether the value was valid.
fn run<F>(values: &[String], mut one: F) -> anyhow::Result<ExitCode>
where
    F: FnMut(&str, &mut Out<'_>) -> io::Result<bool>,
{
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut all_valid = true;
    let written = if values.is_empty() {
        let mut input = io::stdin().lock();
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .context("reading standard input")?;
            if n == 0 {
                break Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let result = match std::str::from_utf8(&line) {
                Ok(text) => one(text, &mut out),
                Err(e) => {
                    let error = NotUtf8(e.valid_up_to() + 1);
                    write_invalid(&mut out, &String::from_utf8_lossy(&line), error)
                }
            };
            match result {
                Ok(valid) => all_valid &= valid,
                Err(e) => break Err(e),
            }
        }
    } else {
        values
            .iter()
            .try_for_each(|value| one(value, &mut out).map(|valid| all_valid &= valid))
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        // The reader went away (`aeogate epc decode < big | head`): nothing left to tell.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing standard output"),
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_line<T: Serialize>(out: &mut Out<'_>, record: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// Writes the line of an input that is not valid, with the reason; returns `false` (not
/// valid) for [`run`].
fn write_invalid(out: &mut Out<'_>, input: &str, error: impl fmt::Display) -> io::Result<bool> {
    let line = Invalid {
        input,
        valid: false,
        error: Shown(error),
    };
    write_line(out, &line).map(|()| false)
}

/// Serialises any `Display` value as a JSON string without an intermediate `String`.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct NotUtf8(usize);

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line is not valid UTF-8 (byte {})", self.0)
    }
}

struct TagUri<'a>(&'a Epc);

impl fmt::Display for TagUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_tag_uri(f)
    }
}

struct Hex<'a>(&'a Epc);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_hex(f)
    }
}

#[derive(Serialize)]
#[serde(bound = "E: fmt::Display")]
struct Invalid<'a, E> {
    input: &'a str,
    valid: bool,
    error: Shown<E>,
}

#[derive(Serialize)]
struct ContainerRecord<'a> {
    input: &'a str,
    valid: bool,
    owner: &'a str,
    category: Shown<char>,
    serial: &'a str,
    check_digit: u8,
    canonical: &'a str,
}

#[derive(Serialize)]
struct EpcRecord<'a> {
    input: &'a str,
    valid: bool,
    scheme: &'static str,
    uri: Shown<&'a Epc>,
    tag_uri: Shown<TagUri<'a>>,
    hex: Shown<Hex<'a>>,
    bits: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_prefix: Option<Shown<Digits>>,
    #[serde(flatten)]
    references: References,
    #[serde(skip_serializing_if = "Option::is_none")]
    gs1_element_string: Option<Shown<protocol::epc::ElementString<'a>>>,
}

/// The fields that follow the company prefix in each scheme.
#[derive(Serialize)]
#[serde(untagged)]
enum References {
    Sgtin {
        item_reference: Shown<Digits>,
        serial: Shown<u64>,
    },
    Sscc {
        serial_reference: Shown<Digits>,
    },
    Grai {
        asset_type: Shown<Digits>,
        serial: Shown<u64>,
    },
    Giai {
        asset_reference: Shown<Digits>,
    },
    None,
}

impl<'a> EpcRecord<'a> {
    fn new(input: &'a str, epc: &'a Epc) -> Self {
        let references = match epc {
            Epc::Sgtin96(v) => References::Sgtin {
                item_reference: Shown(v.item_reference()),
                serial: Shown(v.serial()),
            },
            Epc::Sscc96(v) => References::Sscc {
                serial_reference: Shown(v.serial_reference()),
            },
            Epc::Grai96(v) => References::Grai {
                asset_type: Shown(v.asset_type()),
                serial: Shown(v.serial()),
            },
            Epc::Giai96(v) => References::Giai {
                asset_reference: Shown(v.asset_reference()),
            },
            Epc::Raw(_) => References::None,
        };
        Self {
            input,
            valid: true,
            scheme: epc.scheme(),
            uri: Shown(epc),
            tag_uri: Shown(TagUri(epc)),
            hex: Shown(Hex(epc)),
            bits: epc.bit_len(),
            filter: epc.filter(),
            partition: epc.partition(),
            company_prefix: epc.company_prefix().map(Shown),
            references,
            gs1_element_string: epc.gs1_element_string().map(Shown),
        }
    }
}
