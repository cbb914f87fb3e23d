//! ISO 6346 container numbers (the BIC code painted on every freight container).
//!
//! Layout of the 11 characters: owner code (3 letters) · category identifier (`U` freight
//! container, `J` detachable freight-container-related equipment, `Z` trailer or chassis) ·
//! serial number (6 digits) · check digit.
//!
//! Check digit (ISO 6346 Annex A): letters take the values A=10 … Z=38 skipping multiples
//! of 11 (11, 22, 33), digits their own value; each of the first ten characters is
//! multiplied by 2^position (position 0 … 9, left to right); the sum modulo 11 is the check
//! digit, a remainder of 10 being written 0. `CSQU3054383` sums to 6185 → 3.
//!
//! Parsing normalises what people and OCR portals produce (lower case, spaces, a hyphen or
//! a dot before the check digit, a boxed check digit written as `(3)`) and rejects
//! everything else with the exact reason.

use core::fmt;

/// A valid ISO 6346 container number. Can only be constructed by parsing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerNumber([u8; 11]);

/// ISO 6346 equipment category identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `U`: freight container.
    FreightContainer,
    /// `J`: detachable freight-container-related equipment.
    DetachableEquipment,
    /// `Z`: trailer or chassis.
    TrailerOrChassis,
}

impl Category {
    /// The category letter.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            Self::FreightContainer => 'U',
            Self::DetachableEquipment => 'J',
            Self::TrailerOrChassis => 'Z',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'U' => Some(Self::FreightContainer),
            b'J' => Some(Self::DetachableEquipment),
            b'Z' => Some(Self::TrailerOrChassis),
            _ => None,
        }
    }
}

/// Why a text is not a valid container number. Positions are 1-based, counted in the
/// normalised form (upper case, separators removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// Nothing but separators.
    #[error("empty container number")]
    Empty,
    /// A character outside ASCII (e.g. a Cyrillic letter that looks Latin).
    #[error("character {position} is not ASCII ({found:?})")]
    NonAscii { position: usize, found: char },
    /// A character that is neither a letter, a digit nor an accepted separator.
    #[error("character {position} ({found:?}) is not a letter or digit")]
    BadCharacter { position: usize, found: char },
    /// Not 11 characters after normalisation.
    #[error(
        "expected 11 characters (owner code, category, 6-digit serial, check digit), found {found}"
    )]
    WrongLength { found: usize },
    /// A non-letter in the owner code.
    #[error("owner code must be 3 letters; character {position} is {found:?}")]
    OwnerNotLetter { position: usize, found: char },
    /// Category identifier other than U, J or Z.
    #[error("category identifier must be U, J or Z; found {found:?}")]
    BadCategory { found: char },
    /// A non-digit in the serial number.
    #[error("serial number must be 6 digits; character {position} is {found:?}")]
    SerialNotDigit { position: usize, found: char },
    /// The check digit position holds a non-digit.
    #[error("check digit must be a digit; found {found:?}")]
    CheckNotDigit { found: char },
    /// The check digit does not match the computed one.
    #[error("check digit is {found}, expected {expected} (ISO 6346 weighted sum {sum})")]
    CheckDigit { expected: u8, found: u8, sum: u32 },
}

const LETTER_VALUES: [u8; 26] = [
    10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 34, 35, 36,
    37, 38,
];

/// ISO 6346 value of an upper-case letter or digit (A=10 … Z=38 skipping 11, 22, 33).
fn char_value(b: u8) -> u32 {
    match b {
        b'0'..=b'9' => u32::from(b - b'0'),
        // Every multiple of 11 is skipped: A=10, B=12 … K=21, L=23 … U=32, V=34 … Z=38.
        b'A'..=b'Z' => u32::from(LETTER_VALUES[usize::from(b - b'A')]),
        _ => 0,
    }
}

/// Weighted sum of the first ten characters (upper-case ASCII letters and digits).
#[must_use]
pub fn weighted_sum(first10: &[u8; 10]) -> u32 {
    first10
        .iter()
        .enumerate()
        .map(|(i, &b)| char_value(b) << i)
        .sum()
}

/// The check digit for the first ten characters.
#[must_use]
pub fn check_digit(first10: &[u8; 10]) -> u8 {
    // The sum mod 11 is < 11, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let r = (weighted_sum(first10) % 11) as u8;
    r % 10
}

impl ContainerNumber {
    /// Parses and normalises a container number.
    ///
    /// Accepted: letters in either case; spaces, tabs, `-`, `.` and `/` as separators
    /// anywhere; a check digit in parentheses (`CSQU 305438 (3)`).
    ///
    /// # Errors
    /// A [`ContainerError`] naming the first thing that is wrong.
    pub fn parse(input: &str) -> Result<Self, ContainerError> {
        let mut buf = [0u8; 11];
        let mut len = 0usize;
        let separators = [' ', '\t', '-', '.', '/', '(', ')'];
        for ch in crate::text::identifier_chars(input, &separators) {
            let ch = ch.map_err(|(position, found)| {
                if found.is_ascii() {
                    ContainerError::BadCharacter { position, found }
                } else {
                    ContainerError::NonAscii { position, found }
                }
            })?;
            if len < buf.len() {
                // ASCII alphanumeric, so the cast is exact.
                #[allow(clippy::cast_possible_truncation)]
                {
                    buf[len] = ch as u8;
                }
            }
            len += 1;
        }
        if len == 0 {
            return Err(ContainerError::Empty);
        }
        if len != 11 {
            return Err(ContainerError::WrongLength { found: len });
        }
        for (i, &b) in buf[..3].iter().enumerate() {
            if !b.is_ascii_uppercase() {
                return Err(ContainerError::OwnerNotLetter {
                    position: i + 1,
                    found: char::from(b),
                });
            }
        }
        if Category::from_byte(buf[3]).is_none() {
            return Err(ContainerError::BadCategory {
                found: char::from(buf[3]),
            });
        }
        for (i, &b) in buf[4..10].iter().enumerate() {
            if !b.is_ascii_digit() {
                return Err(ContainerError::SerialNotDigit {
                    position: i + 5,
                    found: char::from(b),
                });
            }
        }
        if !buf[10].is_ascii_digit() {
            return Err(ContainerError::CheckNotDigit {
                found: char::from(buf[10]),
            });
        }
        let mut first10 = [0u8; 10];
        first10.copy_from_slice(&buf[..10]);
        let expected = check_digit(&first10);
        let found = buf[10] - b'0';
        if expected != found {
            return Err(ContainerError::CheckDigit {
                expected,
                found,
                sum: weighted_sum(&first10),
            });
        }
        Ok(Self(buf))
    }

    /// Builds a valid number from owner code, category letter and serial, computing the
    /// check digit (used by generators and tests).
    ///
    /// # Errors
    /// As [`ContainerNumber::parse`] for the resulting text.
    pub fn from_parts(owner: &str, category: char, serial: u32) -> Result<Self, ContainerError> {
        if owner.len() != 3 || !owner.is_ascii() || serial > 999_999 {
            return Err(ContainerError::WrongLength {
                found: owner.len() + 7,
            });
        }
        let mut first10 = [0u8; 10];
        first10[..3].copy_from_slice(owner.as_bytes());
        first10[..3].make_ascii_uppercase();
        first10[3] = if category.is_ascii() {
            // ASCII, so exact.
            #[allow(clippy::cast_possible_truncation)]
            {
                category.to_ascii_uppercase() as u8
            }
        } else {
            b'?'
        };
        let mut s = serial;
        for i in (4..10).rev() {
            // s % 10 < 10.
            #[allow(clippy::cast_possible_truncation)]
            {
                first10[i] = b'0' + (s % 10) as u8;
            }
            s /= 10;
        }
        let mut all = [0u8; 11];
        all[..10].copy_from_slice(&first10);
        all[10] = b'0' + check_digit(&first10);
        match core::str::from_utf8(&all) {
            Ok(text) => Self::parse(text),
            Err(_) => Err(ContainerError::NonAscii {
                position: 1,
                found: char::REPLACEMENT_CHARACTER,
            }),
        }
    }

    /// The canonical 11-character form, e.g. `CSQU3054383`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The owner code (3 letters; with the category letter it forms the BIC prefix).
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.as_str()[..3]
    }

    /// The equipment category.
    #[must_use]
    pub fn category(&self) -> Category {
        Category::from_byte(self.0[3]).unwrap_or(Category::FreightContainer)
    }

    /// The 6-digit serial number.
    #[must_use]
    pub fn serial(&self) -> &str {
        &self.as_str()[4..10]
    }

    /// The check digit.
    #[must_use]
    pub fn check_digit(&self) -> u8 {
        self.0[10] - b'0'
    }

    /// The GS1 BIC EPC URI (TDS 2.0), e.g. `urn:epc:id:bic:CSQU3054383`.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn bic_uri(&self) -> alloc::string::String {
        alloc::format!("urn:epc:id:bic:{}", self.as_str())
    }
}

impl fmt::Display for ContainerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

debug_and_from_str_via_text!(ContainerNumber, ContainerError);

serde_via_text!(ContainerNumber, "an ISO 6346 container number");

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn letter_values_skip_multiples_of_eleven() {
        assert_eq!(char_value(b'A'), 10);
        assert_eq!(char_value(b'B'), 12);
        assert_eq!(char_value(b'K'), 21);
        assert_eq!(char_value(b'L'), 23);
        assert_eq!(char_value(b'U'), 32);
        assert_eq!(char_value(b'V'), 34);
        assert_eq!(char_value(b'Z'), 38);
    }

    #[test]
    fn worked_example_sums_to_6185() {
        assert_eq!(weighted_sum(b"CSQU305438"), 6185);
        assert_eq!(check_digit(b"CSQU305438"), 3);
    }

    #[test]
    fn normalises_case_spaces_and_boxed_check_digit() {
        for text in [
            "csqu3054383",
            "CSQU 305438 3",
            "CSQU 305438-3",
            "CSQU 305438 (3)",
            " CSQU3054383\t",
        ] {
            assert_eq!(
                ContainerNumber::parse(text)
                    .map(|c| c.to_string())
                    .as_deref(),
                Ok("CSQU3054383"),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_category_r_with_reason() {
        // CSQR3054383: the category letter is the problem, whatever the check digit.
        assert_eq!(
            ContainerNumber::parse("CSQR3054383"),
            Err(ContainerError::BadCategory { found: 'R' })
        );
    }

    #[test]
    fn rejects_wrong_check_digit_with_expected_and_found() {
        assert_eq!(
            ContainerNumber::parse("CSQU3054384"),
            Err(ContainerError::CheckDigit {
                expected: 3,
                found: 4,
                sum: 6185
            })
        );
    }

    #[test]
    fn rejects_digits_in_owner_code_non_ascii_and_length() {
        use ContainerError as E;
        for (input, want) in [
            (
                "C5QU3054383",
                E::OwnerNotLetter {
                    position: 2,
                    found: '5',
                },
            ),
            ("CSQU305438", E::WrongLength { found: 10 }),
            (
                "ЕSQU3054383",
                E::NonAscii {
                    position: 1,
                    found: 'Е',
                },
            ),
            (
                "CSQU30543_3",
                E::BadCharacter {
                    position: 10,
                    found: '_',
                },
            ),
            ("  ", E::Empty),
            (
                "CSQU30A4383",
                E::SerialNotDigit {
                    position: 7,
                    found: 'A',
                },
            ),
        ] {
            assert_eq!(ContainerNumber::parse(input), Err(want), "{input}");
        }
    }

    #[test]
    fn from_parts_computes_the_check_digit() {
        let c = ContainerNumber::from_parts("csq", 'U', 305_438).expect("valid");
        assert_eq!(c.as_str(), "CSQU3054383");
        assert_eq!(c.owner(), "CSQ");
        assert_eq!(c.category(), Category::FreightContainer);
        assert_eq!(c.serial(), "305438");
        assert_eq!(c.check_digit(), 3);
    }
}
