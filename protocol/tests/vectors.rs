//! Every row of the repository's test vectors (`tests/vectors/*.tsv`)
//! through the library. A missing vector file fails the tests: they are never skipped.
// Vector rows are checked data; unwrapping them is the assertion.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/vectors.rs"]
mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use protocol::container::{self, ContainerError, ContainerNumber};
use protocol::epc::{Epc, gs1_check_digit};

/// The repository's test vectors (`tests/vectors/`, sources in its README).
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

/// Rows of a vector file as column name → value.
fn rows(file: &str) -> Vec<HashMap<String, String>> {
    vectors::rows(&vectors_dir().join(file))
}

/// The `tag_urn` column marks URIs the source did not assert with ` (computed)`.
fn tag_urn(row: &HashMap<String, String>) -> &str {
    row["tag_urn"].trim_end_matches(" (computed)")
}

#[test]
fn epc_hex_decodes_to_the_pure_identity_and_tag_uris() {
    let rows = rows("epc.tsv");
    for row in &rows {
        let hex = &row["hex"];
        let epc = Epc::from_hex(hex).unwrap_or_else(|e| panic!("{hex}: {e}"));
        assert_eq!(epc.scheme(), row["scheme"], "{hex}");
        assert_eq!(epc.pure_identity_uri(), row["pure_identity_urn"], "{hex}");
        assert_eq!(epc.tag_uri(), tag_urn(row), "{hex}");
        assert_eq!(
            epc.to_string(),
            row["pure_identity_urn"],
            "{hex}: Display is the pure identity URI"
        );
        assert_eq!(epc.to_bytes().len(), 12, "{hex}");
    }
    for scheme in ["sgtin-96", "sscc-96", "grai-96", "giai-96"] {
        assert!(
            rows.iter().any(|r| r["scheme"] == scheme),
            "epc.tsv has no {scheme} row"
        );
    }
}

#[test]
fn epc_tag_uri_encodes_back_to_the_hex() {
    for row in rows("epc.tsv") {
        let epc =
            Epc::from_tag_uri(tag_urn(&row)).unwrap_or_else(|e| panic!("{}: {e}", tag_urn(&row)));
        let mut hex = String::new();
        epc.write_hex(&mut hex).unwrap();
        assert_eq!(hex, row["hex"], "{}", tag_urn(&row));
        assert_eq!(Epc::from_hex(&row["hex"]), Ok(epc));
    }
}

#[test]
fn epc_pure_identity_uri_with_the_rows_filter_encodes_to_the_hex() {
    for row in rows("epc.tsv") {
        let epc = Epc::from_hex(&row["hex"]).unwrap();
        let filter = epc.filter().unwrap();
        let again = Epc::from_pure_identity_uri(&row["pure_identity_urn"], filter).unwrap();
        assert_eq!(again, epc, "{}", row["pure_identity_urn"]);
    }
}

#[test]
fn gs1_keys_match_the_element_strings_and_check_digits() {
    for row in rows("gs1_keys.tsv") {
        let urn = &row["pure_identity_urn"];
        let element = &row["gs1_element_string"];
        let epc = Epc::from_pure_identity_uri(urn, 0).unwrap_or_else(|e| panic!("{urn}: {e}"));
        assert_eq!(epc.pure_identity_uri(), *urn);
        assert!(
            epc.scheme().starts_with(row["scheme"].as_str()),
            "{urn}: scheme {}",
            epc.scheme()
        );
        let shown = epc
            .gs1_element_string()
            .unwrap_or_else(|| panic!("{urn}: no element string"))
            .to_string();
        assert_eq!(shown, *element, "{urn}");
        // The company prefix digits appear in the element string as the URN has them.
        let cp = epc.company_prefix().unwrap().to_string();
        assert!(
            element.replace(' ', "").contains(&cp),
            "{urn}: prefix {cp} not in {element}"
        );
        let input = &row["check_input"];
        if !input.is_empty() {
            let digit: u8 = row["check_digit"].parse().unwrap();
            assert_eq!(gs1_check_digit(input.as_bytes()), Some(digit), "{input}");
            assert!(
                element.contains(&format!("{input}{digit}")),
                "{element} lacks {input}{digit}"
            );
        }
    }
}

#[test]
fn iso6346_codes_are_valid_exactly_when_the_vectors_say() {
    for row in rows("iso6346.tsv") {
        let code = &row["code"];
        let valid: bool = row["valid"]
            .parse()
            .unwrap_or_else(|_| panic!("{code}: valid column {:?}", row["valid"]));
        let parsed = ContainerNumber::parse(code);
        assert_eq!(parsed.is_ok(), valid, "{code}: {parsed:?}");
        if let Ok(number) = parsed {
            let want: u8 = row["computed_check_digit"].parse().unwrap();
            assert_eq!(number.check_digit(), want, "{code}");
            assert_eq!(number.as_str(), code.as_str());
        }
    }
}

#[test]
fn iso6346_weighted_sums_and_check_digits_match_the_vectors() {
    let mut checked = 0;
    for row in rows("iso6346.tsv") {
        let code = &row["code"];
        let Ok(sum) = row["weighted_sum"].parse::<u32>() else {
            continue;
        };
        let first10: &[u8; 10] = code.as_bytes()[..10].try_into().unwrap();
        assert_eq!(container::weighted_sum(first10), sum, "{code}");
        assert_eq!(
            sum % 11,
            row["sum_mod_11"].parse::<u32>().unwrap(),
            "{code}"
        );
        let digit: u8 = row["computed_check_digit"].parse().unwrap();
        assert_eq!(container::check_digit(first10), digit, "{code}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} rows had sums");
}

#[test]
fn iso6346_invalid_codes_fail_for_the_documented_reason() {
    let reasons: HashMap<&str, ContainerError> = HashMap::from([
        (
            "CSQU3054384",
            ContainerError::CheckDigit {
                expected: 3,
                found: 4,
                sum: 6185,
            },
        ),
        (
            "CSQJ3054381",
            ContainerError::CheckDigit {
                expected: 6,
                found: 1,
                sum: 6089,
            },
        ),
        ("CSQA3054383", ContainerError::BadCategory { found: 'A' }),
        (
            "CSIJ3054381",
            ContainerError::CheckDigit {
                expected: 3,
                found: 1,
                sum: 6053,
            },
        ),
        ("CSQU305438", ContainerError::WrongLength { found: 10 }),
        (
            "CSQU3054Z83",
            ContainerError::SerialNotDigit {
                position: 9,
                found: 'Z',
            },
        ),
    ]);
    let invalid: Vec<_> = rows("iso6346.tsv")
        .into_iter()
        .filter(|r| r["valid"] == "false")
        .collect();
    assert_eq!(
        invalid.len(),
        reasons.len(),
        "a new invalid row needs its reason here"
    );
    for row in invalid {
        let code = row["code"].as_str();
        let want = reasons
            .get(code)
            .unwrap_or_else(|| panic!("no expected reason for {code}"));
        assert_eq!(ContainerNumber::parse(code).as_ref(), Err(want), "{code}");
    }
}
