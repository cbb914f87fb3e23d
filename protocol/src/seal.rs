//! Container seals: ISO 17712 mechanical seal markings and ISO 18185 e-seal identities.
//!
//! ISO 17712 requires every seal to carry a unique identification marking (for class H
//! "high security" seals also the manufacturer's name or logo); the marking is letters and
//! digits, often printed in groups. [`SealNumber`] keeps the marking in one normalised
//! form — upper case, spaces and hyphens removed — so that `"ab-123 456"` written on a
//! declaration and `"AB123456"` read by OCR compare equal.
//!
//! An ISO 18185 electronic seal identifies itself by a manufacturer id (16 bits, assigned
//! to e-seal makers) and a tag id (32 bits, unique per manufacturer). [`ESealId`] holds the
//! pair; its text form is `MMMM-TTTTTTTT` in upper-case hexadecimal.

use core::fmt;

/// Longest seal marking accepted, in characters after normalisation.
pub const SEAL_MAX_LEN: usize = 20;
/// Shortest seal marking accepted.
pub const SEAL_MIN_LEN: usize = 3;

/// A mechanical seal's identification marking, normalised. Construct by parsing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SealNumber(heapless::String<SEAL_MAX_LEN>);

/// Why a text is not a seal marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Nothing but separators.
    #[error("empty seal number")]
    Empty,
    /// Shorter than [`SEAL_MIN_LEN`].
    #[error("seal number too short: {found} characters, at least {SEAL_MIN_LEN} expected")]
    TooShort { found: usize },
    /// Longer than [`SEAL_MAX_LEN`].
    #[error("seal number too long: more than {SEAL_MAX_LEN} characters")]
    TooLong,
    /// A character that is not an ASCII letter, digit, space or hyphen.
    #[error(
        "character {position} ({found:?}) is not allowed in a seal number (letters and digits only)"
    )]
    BadCharacter { position: usize, found: char },
    /// E-seal id text not of the form `MMMM-TTTTTTTT` (hex).
    #[error(
        "e-seal id must be 4 hex digits, '-', 8 hex digits (manufacturer-tag), e.g. 0042-0001E240"
    )]
    BadESealId,
}

impl SealNumber {
    /// Parses a seal marking as printed or declared.
    ///
    /// # Errors
    /// A [`SealError`] naming what is wrong.
    pub fn parse(input: &str) -> Result<Self, SealError> {
        let mut out: heapless::String<SEAL_MAX_LEN> = heapless::String::new();
        for ch in crate::text::identifier_chars(input, &[' ', '\t', '-']) {
            let ch = ch.map_err(|(position, found)| SealError::BadCharacter { position, found })?;
            if out.push(ch).is_err() {
                return Err(SealError::TooLong);
            }
        }
        match out.len() {
            0 => Err(SealError::Empty),
            k if k < SEAL_MIN_LEN => Err(SealError::TooShort { found: k }),
            _ => Ok(Self(out)),
        }
    }

    /// The normalised marking.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for SealNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

debug_and_from_str_via_text!(SealNumber, SealError);

/// An ISO 18185 electronic seal identity: manufacturer id and tag id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ESealId {
    manufacturer: u16,
    tag_id: u32,
}

impl ESealId {
    /// The identity of the seal with this manufacturer id and tag id.
    #[must_use]
    pub const fn new(manufacturer: u16, tag_id: u32) -> Self {
        Self {
            manufacturer,
            tag_id,
        }
    }

    /// Parses the text form `MMMM-TTTTTTTT` (hex, either case).
    ///
    /// # Errors
    /// [`SealError::BadESealId`].
    pub fn parse(input: &str) -> Result<Self, SealError> {
        let s = input.trim();
        let (m, t) = s.split_once('-').ok_or(SealError::BadESealId)?;
        let hex = |x: &str| x.bytes().all(|b| b.is_ascii_hexdigit());
        if m.len() != 4 || t.len() != 8 || !hex(m) || !hex(t) {
            return Err(SealError::BadESealId);
        }
        let manufacturer = u16::from_str_radix(m, 16).map_err(|_| SealError::BadESealId)?;
        let tag_id = u32::from_str_radix(t, 16).map_err(|_| SealError::BadESealId)?;
        Ok(Self {
            manufacturer,
            tag_id,
        })
    }

    /// Manufacturer id.
    #[must_use]
    pub const fn manufacturer(&self) -> u16 {
        self.manufacturer
    }

    /// Tag id.
    #[must_use]
    pub const fn tag_id(&self) -> u32 {
        self.tag_id
    }
}

impl fmt::Display for ESealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}-{:08X}", self.manufacturer, self.tag_id)
    }
}

debug_and_from_str_via_text!(ESealId, SealError);

serde_via_text!(SealNumber, "an ISO 17712 seal number");
serde_via_text!(ESealId, "an e-seal id MMMM-TTTTTTTT");

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn normalises_case_spaces_and_hyphens() {
        let a = SealNumber::parse("ab-123 456").expect("valid");
        let b = SealNumber::parse("AB123456").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "AB123456");
    }

    #[test]
    fn rejects_bad_characters_and_lengths() {
        assert_eq!(
            SealNumber::parse("AB12/34"),
            Err(SealError::BadCharacter {
                position: 5,
                found: '/'
            })
        );
        assert_eq!(SealNumber::parse(" - "), Err(SealError::Empty));
        assert_eq!(
            SealNumber::parse("A1"),
            Err(SealError::TooShort { found: 2 })
        );
        assert_eq!(SealNumber::parse(&"1".repeat(21)), Err(SealError::TooLong));
        assert_eq!(
            SealNumber::parse("ÄB1234"),
            Err(SealError::BadCharacter {
                position: 1,
                found: 'Ä'
            })
        );
    }

    #[test]
    fn eseal_id_text_round_trips() {
        let id = ESealId::new(0x42, 123_456);
        assert_eq!(id.to_string(), "0042-0001E240");
        assert_eq!(ESealId::parse("0042-0001e240"), Ok(id));
        assert_eq!(ESealId::parse("42-0001E240"), Err(SealError::BadESealId));
        assert_eq!(ESealId::parse("0042-0001E24G"), Err(SealError::BadESealId));
    }
}
