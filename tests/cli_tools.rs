//! System test of the identifier tools: the real `aeogate` binary over every row of the
//! repository's test vectors (`tests/vectors/`), through standard input and through
//! arguments, and over malformed input, checking each JSON line's reason and the exit
//! status.
// Test data and the binary's output are ours; unwrapping them is the assertion.
#![allow(clippy::unwrap_used)]

#[path = "common/vectors.rs"]
mod vectors;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use protocol::container::ContainerError;
use protocol::epc::{Epc, EpcError};
use serde_json::Value;

struct Run {
    code: i32,
    lines: Vec<Value>,
    stderr: String,
}

/// Runs `aeogate <args>` with `stdin` and parses every stdout line as JSON.
fn aeogate(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aeogate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Write from a thread so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    Run {
        code: out.status.code().unwrap(),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The repository's test vectors (`tests/vectors/`, sources in its README).
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Rows of a vector file as column name → value.
fn rows(file: &str) -> Vec<HashMap<String, String>> {
    vectors::rows(&vectors_dir().join(file))
}

fn stdin_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    values
        .into_iter()
        .flat_map(|v| format!("{v}\n").into_bytes())
        .collect()
}

/// `command` followed by `values`, as one argument list.
fn args_then<'a>(command: &[&'a str], values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    command.iter().copied().chain(values).collect()
}

/// The EPC as hex digits, the way `epc decode` takes it.
fn hex_of(epc: &Epc) -> String {
    let mut hex = String::new();
    epc.write_hex(&mut hex).unwrap();
    hex
}

fn field<'a>(line: &'a Value, key: &str) -> &'a str {
    line[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {line}"))
}

/// Checks one `epc decode` line against an `epc.tsv` row, reading the expected fields from
/// the row's tag URI (`urn:epc:tag:<scheme>:<filter>.<company prefix>.<…>`).
fn check_epc_line(line: &Value, row: &HashMap<String, String>) {
    let tag = row["tag_urn"].trim_end_matches(" (computed)");
    assert_eq!(field(line, "input"), row["hex"]);
    assert_eq!(line["valid"], true, "{line}");
    assert_eq!(field(line, "scheme"), row["scheme"]);
    assert_eq!(field(line, "uri"), row["pure_identity_urn"]);
    assert_eq!(field(line, "tag_uri"), tag);
    assert_eq!(field(line, "hex"), row["hex"]);
    assert_eq!(line["bits"], 96);
    let parts: Vec<&str> = tag.rsplit(':').next().unwrap().split('.').collect();
    assert_eq!(
        line["filter"].as_u64().unwrap().to_string(),
        parts[0],
        "{line}"
    );
    assert_eq!(
        line["partition"].as_u64().unwrap(),
        12 - parts[1].len() as u64,
        "{line}"
    );
    assert_eq!(field(line, "company_prefix"), parts[1]);
    let names: &[&str] = match row["scheme"].as_str() {
        "sgtin-96" => &["item_reference", "serial"],
        "sscc-96" => &["serial_reference"],
        "grai-96" => &["asset_type", "serial"],
        "giai-96" => &["asset_reference"],
        other => panic!("unexpected scheme {other}"),
    };
    for (name, want) in names.iter().zip(&parts[2..]) {
        assert_eq!(field(line, name), *want, "{name} in {line}");
    }
    assert!(line["gs1_element_string"].is_string(), "{line}");
}

#[test]
fn epc_decode_reads_every_vector_row_from_stdin() {
    let rows = rows("epc.tsv");
    let run = aeogate(
        &["epc", "decode"],
        &stdin_of(rows.iter().map(|r| r["hex"].as_str())),
    );
    check_epc_run(&run, &rows);
}

#[test]
fn epc_decode_takes_every_vector_row_as_arguments() {
    let rows = rows("epc.tsv");
    let args = args_then(&["epc", "decode"], rows.iter().map(|r| r["hex"].as_str()));
    let run = aeogate(&args, b"");
    check_epc_run(&run, &rows);
}

#[test]
fn epc_decode_shows_the_gs1_element_string_of_every_key_row() {
    let rows = rows("gs1_keys.tsv");
    let hexes: Vec<String> = rows
        .iter()
        .map(|r| hex_of(&Epc::from_pure_identity_uri(&r["pure_identity_urn"], 0).unwrap()))
        .collect();
    let run = aeogate(
        &["epc", "decode"],
        &stdin_of(hexes.iter().map(String::as_str)),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (line, row) in run.lines.iter().zip(&rows) {
        assert_eq!(field(line, "uri"), row["pure_identity_urn"]);
        assert_eq!(field(line, "gs1_element_string"), row["gs1_element_string"]);
    }
}

/// Checks a successful `epc decode` run: one line per `epc.tsv` row, each matching its row.
fn check_epc_run(run: &Run, rows: &[HashMap<String, String>]) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.lines.len(), rows.len());
    for (line, row) in run.lines.iter().zip(rows) {
        check_epc_line(line, row);
    }
}

fn check_container_line(line: &Value, row: &HashMap<String, String>) {
    let code = row["code"].as_str();
    assert_eq!(field(line, "input"), code);
    let valid = row["valid"] == "true";
    assert_eq!(line["valid"], valid, "{line}");
    if valid {
        assert_eq!(field(line, "canonical"), code);
        assert_eq!(field(line, "owner"), &code[..3]);
        assert_eq!(field(line, "category"), &code[3..4]);
        assert_eq!(field(line, "serial"), &code[4..10]);
        assert_eq!(
            line["check_digit"].as_u64().unwrap().to_string(),
            row["computed_check_digit"]
        );
    } else {
        assert!(!field(line, "error").is_empty(), "{line}");
    }
}

#[test]
fn container_check_reads_every_vector_row_from_stdin_and_arguments() {
    let rows = rows("iso6346.tsv");
    assert!(
        rows.iter().any(|r| r["valid"] == "false"),
        "the vectors include invalid codes"
    );
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str()).collect();
    let by_stdin = aeogate(&["container", "check"], &stdin_of(codes.iter().copied()));
    let args = args_then(&["container", "check"], codes.iter().copied());
    let by_args = aeogate(&args, b"");
    for run in [&by_stdin, &by_args] {
        assert_eq!(run.code, 1, "some rows are invalid: {}", run.stderr);
        assert_eq!(run.lines.len(), rows.len());
        for (line, row) in run.lines.iter().zip(&rows) {
            check_container_line(line, row);
        }
    }
    assert_eq!(by_stdin.lines, by_args.lines);
}

#[test]
fn container_check_of_valid_codes_only_exits_zero() {
    let rows = rows("iso6346.tsv");
    let valid = rows
        .iter()
        .filter(|r| r["valid"] == "true")
        .map(|r| r["code"].as_str());
    let run = aeogate(&["container", "check"], &stdin_of(valid));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.lines.iter().all(|l| l["valid"] == true));
}

/// Bytes of a 96-bit EPC from raw field values, packed independently of the library:
/// `header(8) filter(3) partition(3) company prefix(cp_bits) reference(ref_bits) low`.
fn pack(
    header: u8,
    filter: u8,
    partition: u8,
    cp: (u64, u32),
    reference: (u64, u32),
    low: u64,
) -> String {
    let (cp, cp_bits) = cp;
    let (reference, ref_bits) = reference;
    let v = (u128::from(header) << 88)
        | (u128::from(filter) << 85)
        | (u128::from(partition) << 82)
        | (u128::from(cp) << (82 - cp_bits))
        | (u128::from(reference) << (82 - cp_bits - ref_bits))
        | u128::from(low);
    format!("{:024X}", v)
}

/// Malformed EPCs and the error each must be reported with.
fn malformed_epcs() -> Vec<(String, String)> {
    let e = |err: EpcError| err.to_string();
    vec![
        // SGTIN-96 partition 7 (reserved).
        (
            "301C00000000000000000000".into(),
            "sgtin-96: partition value 7 is reserved".into(),
        ),
        // GIAI-96 partition 7.
        (
            pack(0x34, 0, 7, (0, 0), (0, 0), 0),
            e(EpcError::ReservedPartition { scheme: "giai-96" }),
        ),
        // SGTIN-96 partition 5: a company prefix of 8 digits in the 7-digit field.
        (
            pack(0x30, 3, 5, (10_000_000, 24), (812_345, 20), 6789),
            "sgtin-96: company prefix 10000000 needs more than the 7 digits partition 5 allows"
                .into(),
        ),
        // SGTIN-96 partition 0: item reference 12 in a 1-digit field.
        (
            pack(0x30, 1, 0, (1, 40), (12, 4), 1),
            e(EpcError::DigitsOverflow {
                scheme: "sgtin-96",
                field: "item reference",
                value: 12,
                digits: 1,
                partition: 0,
            }),
        ),
        // SSCC-96 partition 6: serial reference 10^11 in an 11-digit field.
        (
            pack(0x31, 0, 6, (123_456, 20), (100_000_000_000, 38), 0),
            e(EpcError::DigitsOverflow {
                scheme: "sscc-96",
                field: "serial reference",
                value: 100_000_000_000,
                digits: 11,
                partition: 6,
            }),
        ),
        // SSCC-96 with a reserved bit set.
        (
            "3174257BF4499602D2000001".into(),
            e(EpcError::ReservedBits {
                scheme: "sscc-96",
                bits: 24,
                found: 1,
            }),
        ),
        // GRAI-96 partition 0: no digits for the asset type, but 5 is encoded.
        (
            pack(0x33, 0, 0, (61_414_113_245, 40), (5, 4), 0),
            e(EpcError::DigitsOverflow {
                scheme: "grai-96",
                field: "asset type",
                value: 5,
                digits: 0,
                partition: 0,
            }),
        ),
        (
            "3074257BF7194E4000001AZ5".into(),
            "character 23 ('Z') is not a hex digit".into(),
        ),
        (
            "30 74 g5".into(),
            e(EpcError::BadHex {
                position: 7,
                found: 'g',
            }),
        ),
        (
            "3074257BF7194E4000001A8".into(),
            "odd number of hex digits (23); an EPC is a whole number of bytes".into(),
        ),
        (
            "3074257BF7194E4000001A".into(),
            "sgtin-96 needs 96 bits, found 88".into(),
        ),
        (
            "30é4".into(),
            e(EpcError::BadHex {
                position: 3,
                found: 'é',
            }),
        ),
        ("AB".repeat(63), e(EpcError::TooLong { bytes: 63 })),
        (String::new(), "no EPC given".into()),
    ]
}

#[test]
fn epc_decode_reports_each_malformed_input_with_its_reason() {
    let cases = malformed_epcs();
    let run = aeogate(
        &["epc", "decode"],
        &stdin_of(cases.iter().map(|(hex, _)| hex.as_str())),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.lines.len(),
        cases.len(),
        "one line per input line, blank lines included"
    );
    for (line, (hex, reason)) in run.lines.iter().zip(&cases) {
        assert_eq!(field(line, "input"), hex);
        assert_eq!(line["valid"], false, "{line}");
        assert_eq!(field(line, "error"), reason, "{hex}");
        assert_eq!(
            line.as_object().unwrap().len(),
            3,
            "invalid lines carry input, valid, error: {line}"
        );
    }
}

#[test]
fn epc_decode_keeps_order_and_fails_if_any_argument_is_invalid() {
    let run = aeogate(
        &[
            "epc",
            "decode",
            "3074257BF7194E4000001A85",
            "31",
            "E2801160600002054E1D2E3F",
        ],
        b"",
    );
    assert_eq!(run.code, 1);
    let valid: Vec<bool> = run
        .lines
        .iter()
        .map(|l| l["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, false, true]);
    assert_eq!(
        field(&run.lines[1], "error"),
        "sscc-96 needs 96 bits, found 8"
    );
    assert_eq!(field(&run.lines[2], "scheme"), "raw");
    assert_eq!(
        field(&run.lines[2], "uri"),
        "urn:epc:raw:96.xE2801160600002054E1D2E3F"
    );
    assert_eq!(run.lines[2]["bits"], 96);
}

#[test]
fn epc_decode_accepts_lower_case_spaces_0x_and_crlf() {
    let run = aeogate(
        &["epc", "decode"],
        b"0x3074257bf7194e4000001a85\r\n30 74 25 7B F7 19 4E 40 00 00 1A 85\r\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in &run.lines {
        assert_eq!(field(line, "uri"), "urn:epc:id:sgtin:0614141.812345.6789");
    }
    assert_eq!(
        field(&run.lines[0], "input"),
        "0x3074257bf7194e4000001a85",
        "the \\r is not part of the input"
    );
}

#[test]
fn container_check_reports_each_malformed_input_with_its_reason() {
    let cases: Vec<(&str, String)> = vec![
        (
            "CSQR3054383",
            ContainerError::BadCategory { found: 'R' }.to_string(),
        ),
        (
            "CSQU3054384",
            ContainerError::CheckDigit {
                expected: 3,
                found: 4,
                sum: 6185,
            }
            .to_string(),
        ),
        (
            "C5QU3054383",
            ContainerError::OwnerNotLetter {
                position: 2,
                found: '5',
            }
            .to_string(),
        ),
        (
            "ЕSQU3054383",
            ContainerError::NonAscii {
                position: 1,
                found: 'Е',
            }
            .to_string(),
        ),
        (
            "CSQU305438",
            ContainerError::WrongLength { found: 10 }.to_string(),
        ),
        ("", ContainerError::Empty.to_string()),
    ];
    let run = aeogate(
        &["container", "check"],
        &stdin_of(cases.iter().map(|(c, _)| *c)),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.lines.len(), cases.len());
    for (line, (code, reason)) in run.lines.iter().zip(&cases) {
        assert_eq!(field(line, "input"), *code);
        assert_eq!(line["valid"], false);
        assert_eq!(field(line, "error"), reason, "{code}");
    }
    assert!(
        field(&run.lines[0], "error").contains("'R'"),
        "the reason names the bad category letter"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_reported_not_fatal() {
    let run = aeogate(
        &["container", "check"],
        b"CSQU3054383\n\xffCSQU\nCSQU3054383\n",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.lines.len(), 3);
    assert_eq!(run.lines[1]["valid"], false);
    assert_eq!(
        field(&run.lines[1], "error"),
        "line is not valid UTF-8 (byte 1)"
    );
    assert_eq!(run.lines[2]["valid"], true);
}

#[test]
fn empty_input_prints_nothing_and_succeeds() {
    let run = aeogate(&["epc", "decode"], b"");
    assert_eq!((run.code, run.lines.len()), (0, 0));
}

#[test]
fn usage_errors_exit_2_and_help_documents_blank_lines() {
    assert_eq!(aeogate(&["epc"], b"").code, 2);
    assert_eq!(
        aeogate(&["container", "check", "--no-such-flag"], b"").code,
        2
    );
    for tool in [
        ["epc", "decode", "--help"],
        ["container", "check", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_aeogate"))
            .args(tool)
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("blank line"), "{help}");
    }
}

#[test]
fn many_lines_come_back_one_for_one_in_order() {
    let hexes: Vec<String> = (0..20_000u64)
        .map(|i| hex_of(&Epc::from_tag_uri(&format!("urn:epc:tag:giai-96:1.0614141.{i}")).unwrap()))
        .collect();
    let run = aeogate(
        &["epc", "decode"],
        &stdin_of(hexes.iter().map(String::as_str)),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.lines.len(), hexes.len());
    for (i, line) in run.lines.iter().enumerate() {
        assert_eq!(field(line, "asset_reference"), i.to_string());
    }
}
