//! Trader and AEO identifiers, each with its programme and issuing country.
//!
//! Identifiers differ from programme to programme (DOMAIN §1.3–1.6), so each
//! [`Programme`] carries its own syntax rule; there is no single pattern for all of them.
//! An [`OperatorId`] is the identifier as issued, normalised (upper case; spaces, hyphens,
//! dots and slashes removed), together with its programme. Its one canonical text form is
//! `PROGRAMME:IDENTIFIER`, e.g. `EU-AEO:DE123456789012345`, `US-CTPAT:OBOIMP92011`,
//! `BR-OEA:11222333000181`.
//!
//! The syntax rules are format checks, not proof of registration: only the registry says
//! whether an operator is certified.

use core::fmt;

/// Longest identifier accepted by any programme, after normalisation.
pub const OPERATOR_ID_MAX_LEN: usize = 20;

/// An AEO (or equivalent) programme, or an identifier scheme used to name parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Programme {
    /// EU AEO (UCC), keyed on the holder's EORI number: EU member-state code (or `XI`)
    /// plus up to 15 letters/digits, at most 17 characters.
    EuAeo,
    /// UK AEO, keyed on the GB or XI EORI: `GB|XI` + 12 or 15 digits.
    UkAeo,
    /// US CTPAT, keyed on the CTPAT account number (letters and digits, 4–20).
    UsCtpat,
    /// Canada Partners in Protection (letters and digits, 4–15).
    CaPip,
    /// Mexico OEA (SAT), keyed on the RFC: 3–4 letters, 6 digits (date), 3 letters/digits.
    MxOea,
    /// Brazil Programa OEA (Receita Federal), keyed on the CNPJ: 14 digits with two
    /// mod-11 check digits.
    BrOea,
    /// Colombia OEA (DIAN), keyed on the NIT: 9 digits plus a check digit.
    CoOea,
    /// Peru OEA (SUNAT), keyed on the RUC: 11 digits, mod-11 check digit.
    PeOea,
    /// Dominican Republic OEA (DGA), keyed on the RNC: 9 digits.
    DoOea,
    /// Uruguay Operador Económico Calificado, keyed on the RUT: 12 digits.
    UyOec,
    /// Singapore Secure Trade Partnership: `AEOSG` + 12 letters/digits.
    SgStp,
    /// EU MRA partner number (TCUI): partner country code + up to 15 letters/digits.
    EuMra,
}

impl Programme {
    /// Every programme, in declaration order.
    pub const ALL: &'static [Programme] = &[
        Self::EuAeo,
        Self::UkAeo,
        Self::UsCtpat,
        Self::CaPip,
        Self::MxOea,
        Self::BrOea,
        Self::CoOea,
        Self::PeOea,
        Self::DoOea,
        Self::UyOec,
        Self::SgStp,
        Self::EuMra,
    ];

    /// The code used in the canonical text form.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::EuAeo => "EU-AEO",
            Self::UkAeo => "UK-AEO",
            Self::UsCtpat => "US-CTPAT",
            Self::CaPip => "CA-PIP",
            Self::MxOea => "MX-OEA",
            Self::BrOea => "BR-OEA",
            Self::CoOea => "CO-OEA",
            Self::PeOea => "PE-OEA",
            Self::DoOea => "DO-OEA",
            Self::UyOec => "UY-OEC",
            Self::SgStp => "SG-STP",
            Self::EuMra => "EU-MRA",
        }
    }

    /// A human name of the programme.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::EuAeo => "EU Authorised Economic Operator",
            Self::UkAeo => "UK Authorised Economic Operator",
            Self::UsCtpat => "US Customs Trade Partnership Against Terrorism",
            Self::CaPip => "Canada Partners in Protection",
            Self::MxOea => "Mexico Operador Económico Autorizado",
            Self::BrOea => "Brazil Operador Econômico Autorizado",
            Self::CoOea => "Colombia Operador Económico Autorizado",
            Self::PeOea => "Peru Operador Económico Autorizado",
            Self::DoOea => "Dominican Republic Operador Económico Autorizado",
            Self::UyOec => "Uruguay Operador Económico Calificado",
            Self::SgStp => "Singapore Secure Trade Partnership",
            Self::EuMra => "EU mutual-recognition partner number (TCUI)",
        }
    }

    /// Looks a programme up by its code (case-insensitive).
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.code().eq_ignore_ascii_case(code))
    }

    /// The country whose administration runs the programme, when there is one (the EU
    /// programmes are run by every member state: the country comes from the identifier).
    #[must_use]
    pub fn fixed_country(self) -> Option<&'static str> {
        match self {
            Self::EuAeo | Self::UkAeo | Self::EuMra => None,
            Self::UsCtpat => Some("US"),
            Self::CaPip => Some("CA"),
            Self::MxOea => Some("MX"),
            Self::BrOea => Some("BR"),
            Self::CoOea => Some("CO"),
            Self::PeOea => Some("PE"),
            Self::DoOea => Some("DO"),
            Self::UyOec => Some("UY"),
            Self::SgStp => Some("SG"),
        }
    }
}

impl fmt::Display for Programme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a text is not a valid operator identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OperatorIdError {
    /// The canonical form needs `PROGRAMME:IDENTIFIER`.
    #[error("expected PROGRAMME:IDENTIFIER (e.g. EU-AEO:DE123456789012345)")]
    MissingProgramme,
    /// The programme code is not known.
    #[error(
        "unknown programme code (known: EU-AEO, UK-AEO, US-CTPAT, CA-PIP, MX-OEA, BR-OEA, CO-OEA, PE-OEA, DO-OEA, UY-OEC, SG-STP, EU-MRA)"
    )]
    UnknownProgramme,
    /// Nothing after normalisation.
    #[error("empty identifier")]
    Empty,
    /// A character other than a letter or digit (after removing separators).
    #[error("character {position} ({found:?}) is not a letter or digit")]
    BadCharacter { position: usize, found: char },
    /// Length outside what the programme issues.
    #[error("{programme} identifiers have {expected}; found {found} characters")]
    Length {
        programme: Programme,
        expected: &'static str,
        found: usize,
    },
    /// The country prefix is not one the programme issues under.
    #[error("{programme} identifiers start with {expected}; found {found:?}")]
    Country {
        programme: Programme,
        expected: &'static str,
        found: [char; 2],
    },
    /// A character class mismatch at a position the programme fixes.
    #[error("{programme}: character {position} must be {expected}, found {found:?}")]
    Shape {
        programme: Programme,
        position: usize,
        expected: &'static str,
        found: char,
    },
    /// A check digit does not match.
    #[error("{programme}: check digit {position} is {found}, expected {expected}")]
    CheckDigit {
        programme: Programme,
        position: usize,
        expected: u8,
        found: u8,
    },
}

/// EU member states (ISO 3166-1 alpha-2, with Greece as issued in EORIs: `GR`, and `EL`
/// accepted), plus `XI` (Northern Ireland traders in the EU customs system).
const EU_COUNTRIES: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "EL", "HR", "HU", "IE",
    "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI",
];

/// A trader / AEO identifier with its programme. Construct by parsing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId {
    programme: Programme,
    id: heapless::String<OPERATOR_ID_MAX_LEN>,
}

fn shape_err(
    programme: Programme,
    position: usize,
    expected: &'static str,
    found: u8,
) -> OperatorIdError {
    OperatorIdError::Shape {
        programme,
        position,
        expected,
        found: char::from(found),
    }
}

fn all_digits(programme: Programme, s: &[u8], offset: usize) -> Result<(), OperatorIdError> {
    match s.iter().position(|b| !b.is_ascii_digit()) {
        Some(i) => Err(shape_err(programme, offset + i + 1, "a digit", s[i])),
        None => Ok(()),
    }
}

/// The digit at `position` (counted from 1) of the all-digit `s` is the `expected` check digit.
fn check_digit(
    programme: Programme,
    s: &[u8],
    position: usize,
    expected: u8,
) -> Result<(), OperatorIdError> {
    let found = s[position - 1] - b'0';
    if found == expected {
        Ok(())
    } else {
        Err(OperatorIdError::CheckDigit {
            programme,
            position,
            expected,
            found,
        })
    }
}

/// `s` is `len` digits; `expected` describes them in a length error.
fn exactly_digits(
    programme: Programme,
    s: &[u8],
    len: usize,
    expected: &'static str,
) -> Result<(), OperatorIdError> {
    length(programme, s.len(), s.len() == len, expected)?;
    all_digits(programme, s, 0)
}

fn length(
    programme: Programme,
    n: usize,
    ok: bool,
    expected: &'static str,
) -> Result<(), OperatorIdError> {
    if ok {
        Ok(())
    } else {
        Err(OperatorIdError::Length {
            programme,
            expected,
            found: n,
        })
    }
}

fn digit(b: u8) -> u32 {
    u32::from(b - b'0')
}

/// CNPJ check digits (Receita Federal): weights 5,4,3,2,9,8,7,6,5,4,3,2 then
/// 6,5,4,3,2,9,8,7,6,5,4,3,2; remainder < 2 → 0, else 11 − remainder.
#[must_use]
pub fn cnpj_check_digits(first12: &[u8; 12]) -> [u8; 2] {
    const W1: [u32; 12] = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
    const W2: [u32; 13] = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
    let dv = |sum: u32| -> u8 {
        let r = sum % 11;
        // r < 11, so the result is a single digit.
        #[allow(clippy::cast_possible_truncation)]
        if r < 2 { 0 } else { (11 - r) as u8 }
    };
    let s1: u32 = first12.iter().zip(W1).map(|(&b, w)| digit(b) * w).sum();
    let d1 = dv(s1);
    let s2: u32 = first12
        .iter()
        .zip(W2)
        .map(|(&b, w)| digit(b) * w)
        .sum::<u32>()
        + u32::from(d1) * W2[12];
    [d1, dv(s2)]
}

/// RUC check digit (SUNAT): weights 5,4,3,2,7,6,5,4,3,2 over the first 10 digits;
/// 11 − (sum mod 11), with 10 → 0 and 11 → 1.
#[must_use]
pub fn ruc_check_digit(first10: &[u8; 10]) -> u8 {
    const W: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let s: u32 = first10.iter().zip(W).map(|(&b, w)| digit(b) * w).sum();
    // Result of `% 10` is a single digit.
    #[allow(clippy::cast_possible_truncation)]
    let d = ((11 - s % 11) % 10) as u8;
    d
}

impl OperatorId {
    /// Parses the canonical form `PROGRAMME:IDENTIFIER` (programme code case-insensitive).
    ///
    /// # Errors
    /// An [`OperatorIdError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, OperatorIdError> {
        let (p, id) = text
            .trim()
            .split_once(':')
            .ok_or(OperatorIdError::MissingProgramme)?;
        let programme = Programme::from_code(p.trim()).ok_or(OperatorIdError::UnknownProgramme)?;
        Self::new(programme, id)
    }

    /// Validates and normalises an identifier as issued by `programme`.
    ///
    /// # Errors
    /// An [`OperatorIdError`] naming what is wrong.
    pub fn new(programme: Programme, as_issued: &str) -> Result<Self, OperatorIdError> {
        let mut id: heapless::String<OPERATOR_ID_MAX_LEN> = heapless::String::new();
        let mut n = 0usize;
        for ch in crate::text::identifier_chars(as_issued, &[' ', '\t', '-', '.', '/']) {
            let ch =
                ch.map_err(|(position, found)| OperatorIdError::BadCharacter { position, found })?;
            n += 1;
            // Past the longest identifier: keep counting so the length error is exact.
            let _ = id.push(ch);
        }
        if n == 0 {
            return Err(OperatorIdError::Empty);
        }
        if n > OPERATOR_ID_MAX_LEN {
            return Err(OperatorIdError::Length {
                programme,
                expected: "at most 20 characters",
                found: n,
            });
        }
        check_syntax(programme, id.as_bytes())?;
        Ok(Self { programme, id })
    }

    /// The programme.
    #[must_use]
    pub fn programme(&self) -> Programme {
        self.programme
    }

    /// The normalised identifier, without the programme.
    #[must_use]
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// ISO 3166-1 alpha-2 code of the issuing country (for EU identifiers the member
    /// state's prefix; `XI` for Northern Ireland).
    #[must_use]
    pub fn country(&self) -> &str {
        match self.programme.fixed_country() {
            Some(c) => c,
            None => self.id.get(..2).unwrap_or(""),
        }
    }
}

fn check_syntax(p: Programme, s: &[u8]) -> Result<(), OperatorIdError> {
    let n = s.len();
    let cc = |s: &[u8]| {
        [
            char::from(s[0]),
            char::from(s.get(1).copied().unwrap_or(b' ')),
        ]
    };
    match p {
        Programme::EuAeo => {
            length(
                p,
                n,
                (3..=17).contains(&n),
                "a 2-letter member-state code and 1 to 15 characters",
            )?;
            let prefix = core::str::from_utf8(&s[..2]).unwrap_or("");
            if !EU_COUNTRIES.contains(&prefix) {
                return Err(OperatorIdError::Country {
                    programme: p,
                    expected: "an EU member-state code or XI",
                    found: cc(s),
                });
            }
        }
        Programme::UkAeo => {
            if !(s.starts_with(b"GB") || s.starts_with(b"XI")) {
                return Err(OperatorIdError::Country {
                    programme: p,
                    expected: "GB or XI",
                    found: cc(s),
                });
            }
            length(p, n, n == 14 || n == 17, "GB or XI and 12 or 15 digits")?;
            all_digits(p, &s[2..], 2)?;
        }
        Programme::UsCtpat => length(p, n, (4..=20).contains(&n), "4 to 20 letters and digits")?,
        Programme::CaPip => length(p, n, (4..=15).contains(&n), "4 to 15 letters and digits")?,
        Programme::MxOea => {
            // RFC: 3 letters (companies) or 4 (individuals), 6-digit date, 3-character homoclave.
            length(p, n, n == 12 || n == 13, "12 or 13 characters (RFC)")?;
            let letters = n - 9;
            if let Some(i) = s[..letters].iter().position(|b| !b.is_ascii_uppercase()) {
                return Err(shape_err(p, i + 1, "a letter", s[i]));
            }
            all_digits(p, &s[letters..letters + 6], letters)?;
        }
        Programme::BrOea => {
            exactly_digits(p, s, 14, "14 digits (CNPJ)")?;
            let mut first = [0u8; 12];
            first.copy_from_slice(&s[..12]);
            let [d1, d2] = cnpj_check_digits(&first);
            check_digit(p, s, 13, d1)?;
            check_digit(p, s, 14, d2)?;
        }
        Programme::CoOea => {
            exactly_digits(p, s, 10, "10 digits (NIT and check digit)")?;
        }
        Programme::PeOea => {
            exactly_digits(p, s, 11, "11 digits (RUC)")?;
            let mut first = [0u8; 10];
            first.copy_from_slice(&s[..10]);
            check_digit(p, s, 11, ruc_check_digit(&first))?;
        }
        Programme::DoOea => {
            exactly_digits(p, s, 9, "9 digits (RNC)")?;
        }
        Programme::UyOec => {
            exactly_digits(p, s, 12, "12 digits (RUT)")?;
        }
        Programme::SgStp => {
            if !s.starts_with(b"AEOSG") {
                return Err(OperatorIdError::Country {
                    programme: p,
                    expected: "AEOSG",
                    found: cc(s),
                });
            }
            length(p, n, n == 17, "AEOSG and 12 characters")?;
        }
        Programme::EuMra => {
            length(
                p,
                n,
                (3..=17).contains(&n),
                "a 2-letter country code and 1 to 15 characters",
            )?;
            if !s[..2].iter().all(u8::is_ascii_uppercase) {
                return Err(OperatorIdError::Country {
                    programme: p,
                    expected: "a 2-letter country code",
                    found: cc(s),
                });
            }
        }
    }
    Ok(())
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.programme.code(), self.id)
    }
}

debug_and_from_str_via_text!(OperatorId, OperatorIdError);

serde_via_text!(OperatorId, "an operator id PROGRAMME:IDENTIFIER");
serde_via_text!(
    Programme,
    "a programme code such as EU-AEO or US-CTPAT",
    |v: &str| Programme::from_code(v).ok_or(OperatorIdError::UnknownProgramme)
);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ok(s: &str) -> OperatorId {
        OperatorId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Asserts that parsing `text` fails with an error matching `err`.
    macro_rules! assert_refused {
        ($text:expr, $err:pat) => {
            let result = OperatorId::parse($text);
            assert!(matches!(result, Err($err)), "{}: {result:?}", $text);
        };
    }

    #[test]
    fn canonical_form_round_trips_and_normalises() {
        let id = ok("eu-aeo: de 1234-5678 9012345");
        assert_eq!(id.to_string(), "EU-AEO:DE123456789012345");
        assert_eq!(id.country(), "DE");
        assert_eq!(ok(&id.to_string()), id);
    }

    #[test]
    fn uk_eori_shape_is_strict() {
        assert_eq!(ok("UK-AEO:GB123456789000").country(), "GB");
        assert_eq!(ok("UK-AEO:XI123456789000123").country(), "XI");
        assert_refused!("UK-AEO:GB1234567890", OperatorIdError::Length { .. });
        assert_refused!("UK-AEO:FR123456789000", OperatorIdError::Country { .. });
        assert_refused!(
            "UK-AEO:GB12345678900A",
            OperatorIdError::Shape { position: 14, .. }
        );
    }

    #[test]
    fn eu_eori_needs_a_member_state_prefix() {
        assert_refused!("EU-AEO:US123", OperatorIdError::Country { .. });
        assert_refused!("EU-AEO:DE1234567890123456", OperatorIdError::Length { .. });
    }

    #[test]
    fn cnpj_check_digits_are_verified() {
        // 11.222.333/0001-81 is the Receita Federal's documentation example.
        assert_eq!(ok("BR-OEA:11.222.333/0001-81").id(), "11222333000181");
        assert_eq!(
            OperatorId::parse("BR-OEA:11222333000182"),
            Err(OperatorIdError::CheckDigit {
                programme: Programme::BrOea,
                position: 14,
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn ruc_check_digit_is_verified() {
        // 20100070970: a published SUNAT RUC (weights 5432765432).
        assert_eq!(ok("PE-OEA:20100070970").country(), "PE");
        assert_refused!("PE-OEA:20100070971", OperatorIdError::CheckDigit { .. });
    }

    #[test]
    fn other_programmes_have_their_own_rules() {
        assert_eq!(ok("US-CTPAT:oboImp92011").id(), "OBOIMP92011");
        assert_eq!(ok("MX-OEA:ABC010203XY9").country(), "MX");
        assert_refused!(
            "MX-OEA:AB1010203XY9",
            OperatorIdError::Shape { position: 3, .. }
        );
        assert_eq!(ok("SG-STP:AEOSG123456789012").country(), "SG");
        assert_eq!(ok("EU-MRA:CA123456789").country(), "CA");
        assert_refused!("XX-AEO:1234", OperatorIdError::UnknownProgramme);
        assert_refused!("DE1234", OperatorIdError::MissingProgramme);
        assert_refused!(
            "US-CTPAT:ab_c1",
            OperatorIdError::BadCharacter { position: 3, .. }
        );
    }
}
