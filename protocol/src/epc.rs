//! GS1 EPC binary encodings (the Gen2 EPC memory bank from bit 20h), decoded to fields and
//! URIs and encoded back, per the GS1 EPC Tag Data Standard (TDS) 1.13.
//!
//! # Schemes
//!
//! | header | scheme | after `header(8) filter(3) partition(3) company prefix(M)` | coding table |
//! |---|---|---|---|
//! | `30` | SGTIN-96 | item reference (N) · serial (38, integer) | §14.5.1, Tables 14-2, 14-3 |
//! | `31` | SSCC-96 | serial reference (N) · 24 reserved bits, all zero | §14.5.2, Tables 14-5, 14-6 |
//! | `33` | GRAI-96 | asset type (N) · serial (38, integer) | §14.5.4, Tables 14-10, 14-11 |
//! | `34` | GIAI-96 | individual asset reference (N, unpadded) | §14.5.5, Tables 14-13, 14-14 |
//!
//! The partition value selects how the bits after it split between the company prefix
//! (M bits, L digits) and the next field (N bits, K digits); `M + N` is constant per scheme.
//! Every other header, and the unprogrammed header `00`, decodes to the EPC Raw URI
//! `urn:epc:raw:<bits>.x<HEX>` (TDS §12.1; hex digits upper case per §15.2.1 step 5).
//!
//! # What cannot be decoded
//!
//! For the four schemes above the standard's validity tests are applied and each failure
//! is an [`EpcError`] naming the field: partition value 7 (reserved in every partition
//! table), a company prefix or reference whose value needs more digits than the partition
//! allows (TDS §14.4.3 "Partition Table" decoding), non-zero SSCC-96 reserved bits, fewer
//! bits than the scheme needs (TDS §14.4 step 2). Bits beyond the scheme's 96 are dropped,
//! as TDS §14.4 step 3 prescribes for word-transfer padding (a 128-bit EPC bank holding an
//! SGTIN-96). TDS §15.2.2 would turn a known header that fails these tests into a raw URI;
//! we report the error instead, because at a gate a mis-programmed tag is worth knowing
//! about. A caller that wants the §15.2.2 behaviour writes
//! `Epc::from_bytes(b).or_else(|_| Epc::raw(b))`.
//!
//! # API shape
//!
//! [`Epc`] is a plain `Copy` value with fixed-size fields (no heap): parse it with
//! [`Epc::from_hex`], [`Epc::from_bytes`], [`Epc::from_tag_uri`] or
//! [`Epc::from_pure_identity_uri`], or build a scheme value with e.g. [`Sgtin96::new`].
//! URIs are written into any [`core::fmt::Write`] ([`Epc::write_pure_identity_uri`],
//! [`Epc::write_tag_uri`]; `Display` is the pure identity URI), or returned as `String`
//! with the `alloc` feature.

use core::fmt::{self, Write as _};

/// Bytes in a 96-bit EPC binary encoding.
pub const EPC96_BYTES: usize = 12;

/// Longest EPC a Gen2 tag can hold: the PC length field counts 16-bit words in 5 bits, so at
/// most 31 words = 496 bits (TDS 1.13 §9, Table 9-3).
pub const MAX_EPC_BYTES: usize = 62;

/// SGTIN-96 header (TDS 1.13 Table 14-1).
pub const HEADER_SGTIN_96: u8 = 0x30;
/// SSCC-96 header (TDS 1.13 Table 14-1).
pub const HEADER_SSCC_96: u8 = 0x31;
/// GRAI-96 header (TDS 1.13 Table 14-1).
pub const HEADER_GRAI_96: u8 = 0x33;
/// GIAI-96 header (TDS 1.13 Table 14-1).
pub const HEADER_GIAI_96: u8 = 0x34;

/// Width of the SGTIN-96 and GRAI-96 serial field, an integer without leading zeros
/// (TDS 1.13 Tables 14-3 and 14-11): at most 274,877,906,943.
pub const SERIAL_BITS: u32 = 38;

/// Width of the SSCC-96 reserved field, which must be zero (TDS 1.13 Table 14-6).
pub const SSCC_RESERVED_BITS: u32 = 24;

/// Bits after header, filter and partition in every 96-bit scheme here: 96 − 8 − 3 − 3.
const BODY_BITS: u32 = 82;

/// Why an EPC could not be parsed, decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpcError {
    /// No hex digits (or no bytes) at all.
    #[error("no EPC given")]
    Empty,
    /// A character that is neither a hex digit nor a space (1-based character position).
    #[error("character {position} ({found:?}) is not a hex digit")]
    BadHex { position: usize, found: char },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({digits}); an EPC is a whole number of bytes")]
    OddLength { digits: usize },
    /// Longer than any Gen2 EPC.
    #[error("EPC of {bytes} bytes is longer than the Gen2 maximum of {MAX_EPC_BYTES}")]
    TooLong { bytes: usize },
    /// The header names a scheme that needs more bits than were given (TDS §14.4 step 2).
    #[error("{scheme} needs {expected} bits, found {found}")]
    Truncated {
        scheme: &'static str,
        expected: usize,
        found: usize,
    },
    /// Partition value 7, reserved in every partition table.
    #[error("{scheme}: partition value 7 is reserved")]
    ReservedPartition { scheme: &'static str },
    /// A partition value that does not fit in the 3-bit field.
    #[error("partition value {value} is out of range 0-6")]
    PartitionOutOfRange { value: u8 },
    /// A filter value that does not fit in the 3-bit field.
    #[error("filter value {value} is out of range 0-7")]
    FilterOutOfRange { value: u8 },
    /// A field's value needs more decimal digits than the partition gives it
    /// (TDS §14.4.3: the value must be below 10^digits).
    #[error(
        "{scheme}: {field} {value} needs more than the {digits} digits partition {partition} allows"
    )]
    DigitsOverflow {
        scheme: &'static str,
        field: &'static str,
        value: u64,
        digits: u8,
        partition: u8,
    },
    /// Reserved bits that must be zero are not.
    #[error("{scheme}: the {bits} reserved bits must be zero, found {found:#x}")]
    ReservedBits {
        scheme: &'static str,
        bits: u32,
        found: u64,
    },
    /// An integer field whose value does not fit its bit width.
    #[error("{scheme}: {field} does not fit in {bits} bits")]
    TooManyBits {
        scheme: &'static str,
        field: &'static str,
        bits: u32,
    },
    /// An integer field written with leading zeros, which an integer encoding cannot keep.
    #[error("{scheme}: {field} has a leading zero, which {scheme} cannot encode")]
    LeadingZero {
        scheme: &'static str,
        field: &'static str,
    },
    /// A URI that does not have the expected shape at a character (1-based position).
    #[error("not an EPC URI: expected {expected} at character {position}")]
    UriSyntax {
        position: usize,
        expected: &'static str,
    },
    /// A URI naming a scheme this module does not encode.
    #[error(
        "unsupported EPC scheme {scheme:?} (supported: sgtin-96, sscc-96, grai-96, giai-96, raw)"
    )]
    UnsupportedScheme { scheme: heapless::String<16> },
    /// A URI whose scheme has a different number of dot-separated fields.
    #[error("{scheme} URI needs {expected} dot-separated fields, found {found}")]
    FieldCount {
        scheme: &'static str,
        expected: usize,
        found: usize,
    },
    /// A URI field with characters it cannot hold.
    #[error("{scheme}: {field} must be {expected}")]
    FieldSyntax {
        scheme: &'static str,
        field: &'static str,
        expected: &'static str,
    },
    /// A company prefix outside the 6 to 12 digits the partition tables cover.
    #[error("{scheme}: company prefix has {digits} digits; partition tables cover 6 to 12")]
    CompanyPrefixLength { scheme: &'static str, digits: usize },
    /// A padded field whose length does not complement the company prefix.
    #[error(
        "{scheme}: with a {company_prefix_digits}-digit company prefix the {field} must have {expected} digits, found {found}"
    )]
    ReferenceLength {
        scheme: &'static str,
        field: &'static str,
        company_prefix_digits: usize,
        expected: u8,
        found: usize,
    },
    /// Tag URI control fields (`[att=…]`, `[umi=…]`, `[xpc=…]`) describe the PC word, not
    /// the EPC, and cannot be encoded into EPC bytes.
    #[error(
        "control fields ([att=…], [umi=…], [xpc=…]) are not part of the EPC binary; remove them"
    )]
    ControlFields,
    /// A raw URI whose declared length and hex payload disagree, or are not whole bytes.
    #[error("raw URI declares {bits} bits but carries {hex_digits} hex digits (whole bytes only)")]
    RawLength { bits: usize, hex_digits: usize },
}

/// A decimal field as the URI shows it: `value` zero-padded to `width` digits. Width 0 is
/// the empty field (GRAI-96 asset type at partition 0, written `..` in the URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digits {
    value: u64,
    width: u8,
}

impl Digits {
    /// The numeric value.
    #[must_use]
    pub fn value(self) -> u64 {
        self.value
    }

    /// Number of digits in the URI form.
    #[must_use]
    pub fn width(self) -> usize {
        usize::from(self.width)
    }

    /// Writes the digits into `out` (which must hold [`Digits::width`] bytes).
    fn write_ascii(self, out: &mut [u8]) {
        let mut v = self.value;
        for slot in out.iter_mut().take(self.width()).rev() {
            // v % 10 < 10.
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
}

impl fmt::Display for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.width == 0 {
            Ok(())
        } else {
            write!(f, "{:0w$}", self.value, w = self.width())
        }
    }
}

/// 10^n for n = 0 ..= 19 (10^19 is the largest power of ten in a `u64`).
const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Number of decimal digits of `v` without leading zeros (`0` has one).
fn decimal_len(v: u64) -> u8 {
    let mut n = 1u8;
    while usize::from(n) < POW10.len() && v >= POW10[usize::from(n)] {
        n += 1;
    }
    n
}

fn mask(bits: u32) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX >> (128 - bits)
    }
}

/// One row of a partition table: company prefix bits/digits and the next field's
/// bits/digits (for unpadded tables, its maximum digits).
#[derive(Debug, Clone, Copy)]
struct Row {
    cp_bits: u32,
    cp_digits: u8,
    ref_bits: u32,
    ref_digits: u8,
}

/// The company prefix column (bits M, digits L) for partition values 0 ..= 6, the same in
/// every partition table of TDS 1.13 §14.5.
const COMPANY_PREFIX: [(u32, u8); 7] = [
    (40, 12),
    (37, 11),
    (34, 10),
    (30, 9),
    (27, 8),
    (24, 7),
    (20, 6),
];

/// A partition table from the width the company prefix and the field after it share: in
/// every row of a TDS 1.13 §14.5 table the two fields together take `bits` bits (M + N) and
/// `digits` digits (L + K; for unpadded tables, the field's maximum digits).
const fn partition_table(bits: u32, digits: u8) -> [Row; 7] {
    let mut table = [Row {
        cp_bits: 0,
        cp_digits: 0,
        ref_bits: 0,
        ref_digits: 0,
    }; 7];
    let mut i = 0;
    while i < 7 {
        let (cp_bits, cp_digits) = COMPANY_PREFIX[i];
        table[i] = Row {
            cp_bits,
            cp_digits,
            ref_bits: bits - cp_bits,
            ref_digits: digits - cp_digits,
        };
        i += 1;
    }
    table
}

/// A scheme's coding table, as far as this module needs it.
#[derive(Debug)]
struct Layout {
    /// Tag URI scheme name, e.g. `sgtin-96`.
    scheme: &'static str,
    /// Pure identity URI scheme name, e.g. `sgtin`.
    id: &'static str,
    header: u8,
    /// Rows for partition values 0 ..= 6; 7 is reserved.
    table: [Row; 7],
    /// Name of the field after the company prefix.
    reference: &'static str,
    /// GIAI's "Unpadded Partition Table" (TDS §14.4.4): the reference has no leading zeros.
    unpadded: bool,
}

/// TDS 1.13 §14.5.1, Table 14-2 (SGTIN partition table).
const SGTIN: Layout = Layout {
    scheme: "sgtin-96",
    id: "sgtin",
    header: HEADER_SGTIN_96,
    table: partition_table(44, 13),
    reference: "item reference",
    unpadded: false,
};

/// TDS 1.13 §14.5.2, Table 14-5 (SSCC partition table).
const SSCC: Layout = Layout {
    scheme: "sscc-96",
    id: "sscc",
    header: HEADER_SSCC_96,
    table: partition_table(58, 17),
    reference: "serial reference",
    unpadded: false,
};

/// TDS 1.13 §14.5.4, Table 14-10 (GRAI partition table).
const GRAI: Layout = Layout {
    scheme: "grai-96",
    id: "grai",
    header: HEADER_GRAI_96,
    table: partition_table(44, 12),
    reference: "asset type",
    unpadded: false,
};

/// TDS 1.13 §14.5.5, Table 14-13 (GIAI-96 partition table; the second column is the
/// maximum number of digits).
const GIAI: Layout = Layout {
    scheme: "giai-96",
    id: "giai",
    header: HEADER_GIAI_96,
    table: partition_table(82, 25),
    reference: "individual asset reference",
    unpadded: true,
};

/// Fields common to the partitioned schemes, before validation.
#[derive(Debug, Clone, Copy)]
struct Fields {
    filter: u8,
    partition: u8,
    company_prefix: u64,
    reference: u64,
    /// Serial (SGTIN, GRAI), reserved bits (SSCC) or nothing (GIAI).
    low: u64,
}

impl Layout {
    fn row(&self, partition: u8) -> Result<Row, EpcError> {
        match partition {
            0..=6 => Ok(self.table[usize::from(partition)]),
            7 => Err(EpcError::ReservedPartition {
                scheme: self.scheme,
            }),
            value => Err(EpcError::PartitionOutOfRange { value }),
        }
    }

    /// Bits after the reference field: `82 − M − N` (constant per scheme).
    fn low_bits(&self) -> u32 {
        let r = self.table[0];
        BODY_BITS - r.cp_bits - r.ref_bits
    }

    fn unpack(&self, v: u128) -> Result<Fields, EpcError> {
        // Every shifted value is masked to at most 64 bits, so the casts are exact.
        let filter = ((v >> 85) & 0b111) as u8;
        let partition = ((v >> 82) & 0b111) as u8;
        let r = self.row(partition)?;
        let company_prefix = ((v >> (BODY_BITS - r.cp_bits)) & mask(r.cp_bits)) as u64;
        let reference = ((v >> (BODY_BITS - r.cp_bits - r.ref_bits)) & mask(r.ref_bits)) as u64;
        let low = (v & mask(self.low_bits())) as u64;
        Ok(Fields {
            filter,
            partition,
            company_prefix,
            reference,
            low,
        })
    }

    /// The validity tests shared by decoding and encoding: filter, partition, and the
    /// company prefix and reference against the partition row.
    fn check(&self, f: &Fields) -> Result<Row, EpcError> {
        if f.filter > 7 {
            return Err(EpcError::FilterOutOfRange { value: f.filter });
        }
        let r = self.row(f.partition)?;
        if f.company_prefix >= POW10[usize::from(r.cp_digits)] {
            return Err(EpcError::DigitsOverflow {
                scheme: self.scheme,
                field: "company prefix",
                value: f.company_prefix,
                digits: r.cp_digits,
                partition: f.partition,
            });
        }
        if self.unpadded {
            // 2^N < 10^K in every GIAI-96 row, so the bit width is the binding limit.
            if u128::from(f.reference) > mask(r.ref_bits) {
                return Err(EpcError::TooManyBits {
                    scheme: self.scheme,
                    field: self.reference,
                    bits: r.ref_bits,
                });
            }
        } else if f.reference >= POW10[usize::from(r.ref_digits)] {
            return Err(EpcError::DigitsOverflow {
                scheme: self.scheme,
                field: self.reference,
                value: f.reference,
                digits: r.ref_digits,
                partition: f.partition,
            });
        }
        Ok(r)
    }

    fn check_serial(&self, serial: u64) -> Result<(), EpcError> {
        if u128::from(serial) > mask(SERIAL_BITS) {
            return Err(EpcError::TooManyBits {
                scheme: self.scheme,
                field: "serial",
                bits: SERIAL_BITS,
            });
        }
        Ok(())
    }

    fn pack(&self, f: &Fields) -> [u8; EPC96_BYTES] {
        let r = self.table[usize::from(f.partition & 0b111).min(6)];
        let v = (u128::from(self.header) << 88)
            | (u128::from(f.filter & 0b111) << 85)
            | (u128::from(f.partition & 0b111) << 82)
            | ((u128::from(f.company_prefix) & mask(r.cp_bits)) << (BODY_BITS - r.cp_bits))
            | ((u128::from(f.reference) & mask(r.ref_bits))
                << (BODY_BITS - r.cp_bits - r.ref_bits))
            | (u128::from(f.low) & mask(self.low_bits()));
        let all = v.to_be_bytes();
        let mut out = [0u8; EPC96_BYTES];
        out.copy_from_slice(&all[16 - EPC96_BYTES..]);
        out
    }

    fn company_prefix(&self, partition: u8, value: u64) -> Digits {
        let r = self.table[usize::from(partition).min(6)];
        Digits {
            value,
            width: r.cp_digits,
        }
    }

    fn reference(&self, partition: u8, value: u64) -> Digits {
        let r = self.table[usize::from(partition).min(6)];
        let width = if self.unpadded {
            decimal_len(value)
        } else {
            r.ref_digits
        };
        Digits { value, width }
    }
}

/// Declares one partitioned 96-bit scheme over its [`Layout`]: the struct, `new` (checks
/// the fields), `decode`, the accessors and `to_bytes`. A scheme written with a
/// `serial` (last) keeps a 38-bit serial in the low bits; one without has reserved low bits
/// that must be zero (SSCC's 24; GIAI has none).
macro_rules! scheme96 {
    (@low $s:ident, $serial:ident) => {
        $s.$serial
    };
    (@low $s:ident) => {
        0
    };
    (@has_serial $serial:ident) => {
        true
    };
    (@has_serial) => {
        false
    };
    (@decode $layout:ident, $f:ident, $serial:ident) => {
        Self::new($f.filter, $f.partition, $f.company_prefix, $f.reference, $f.low)
    };
    (@decode $layout:ident, $f:ident) => {{
        if $f.low != 0 {
            return Err(EpcError::ReservedBits {
                scheme: $layout.scheme,
                bits: $layout.low_bits(),
                found: $f.low,
            });
        }
        Self::new($f.filter, $f.partition, $f.company_prefix, $f.reference)
    }};
    (
        $(#[$doc:meta])*
        $name:ident over $layout:ident {
            $(#[$new_doc:meta])*
            new;
            $(#[$filter_doc:meta])*
            filter;
            $(#[$ref_doc:meta])*
            $reference:ident;
            $(#[$bytes_doc:meta])*
            to_bytes;
            $(
                $(#[$serial_doc:meta])*
                $serial:ident;
            )?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            filter: u8,
            partition: u8,
            company_prefix: u64,
            $reference: u64,
            $($serial: u64,)?
        }

        impl $name {
            $(#[$new_doc])*
            pub fn new(
                filter: u8,
                partition: u8,
                company_prefix: u64,
                $reference: u64,
                $($serial: u64,)?
            ) -> Result<Self, EpcError> {
                let s = Self {
                    filter,
                    partition,
                    company_prefix,
                    $reference,
                    $($serial,)?
                };
                $layout.check(&s.fields())?;
                $($layout.check_serial($serial)?;)?
                Ok(s)
            }

            fn decode(v: u128) -> Result<Self, EpcError> {
                let f = $layout.unpack(v)?;
                scheme96!(@decode $layout, f $(, $serial)?)
            }

            fn fields(&self) -> Fields {
                Fields {
                    filter: self.filter,
                    partition: self.partition,
                    company_prefix: self.company_prefix,
                    reference: self.$reference,
                    low: scheme96!(@low self $(, $serial)?),
                }
            }

            fn parts(&self) -> Parts {
                Parts {
                    layout: &$layout,
                    fields: self.fields(),
                    has_serial: scheme96!(@has_serial $($serial)?),
                }
            }

            $(#[$filter_doc])*
            #[must_use]
            pub fn filter(&self) -> u8 {
                self.filter
            }
            /// Partition value 0 ..= 6.
            #[must_use]
            pub fn partition(&self) -> u8 {
                self.partition
            }
            /// GS1 company prefix.
            #[must_use]
            pub fn company_prefix(&self) -> Digits {
                $layout.company_prefix(self.partition, self.company_prefix)
            }
            $(#[$ref_doc])*
            #[must_use]
            pub fn $reference(&self) -> Digits {
                $layout.reference(self.partition, self.$reference)
            }
            $(
                $(#[$serial_doc])*
                #[must_use]
                pub fn $serial(&self) -> u64 {
                    self.$serial
                }
            )?
            $(#[$bytes_doc])*
            #[must_use]
            pub fn to_bytes(&self) -> [u8; EPC96_BYTES] {
                $layout.pack(&self.fields())
            }
        }

        impl From<$name> for Epc {
            fn from(v: $name) -> Self {
                Self::$name(v)
            }
        }
    };
}

/// A partitioned scheme value seen through its layout: what [`Epc`]'s accessors and URIs
/// need, written once for the four schemes.
#[derive(Debug, Clone, Copy)]
struct Parts {
    layout: &'static Layout,
    fields: Fields,
    /// The low bits hold a serial (SGTIN-96, GRAI-96), not reserved bits.
    has_serial: bool,
}

impl Parts {
    fn company_prefix(&self) -> Digits {
        self.layout
            .company_prefix(self.fields.partition, self.fields.company_prefix)
    }

    fn reference(&self) -> Digits {
        self.layout
            .reference(self.fields.partition, self.fields.reference)
    }

    /// Writes `.serial` when the scheme has one.
    fn write_serial<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        if self.has_serial {
            write!(w, ".{}", self.fields.low)?;
        }
        Ok(())
    }
}

/// An [`Epc`] as either a partitioned scheme or raw bits.
enum View<'a> {
    Partitioned(Parts),
    Raw(&'a RawEpc),
}

scheme96! {
    /// SGTIN-96: serialised GTIN (TDS 1.13 §14.5.1).
    Sgtin96 over SGTIN {
        /// Builds an SGTIN-96 from field values. `item_reference` includes the indicator
        /// digit as its first digit, as in the URI.
        ///
        /// # Errors
        /// Filter above 7, partition 7 or above, a company prefix or item reference with
        /// more digits than the partition allows, a serial of more than 38 bits.
        new;
        /// Filter value (TDS §10.1: 1 point of sale, 2 full case, 6 unit load, …).
        filter;
        /// Indicator digit followed by the item reference.
        item_reference;
        /// The 96-bit binary encoding.
        to_bytes;
        /// Serial number (an integer of at most 38 bits).
        serial;
    }
}

scheme96! {
    /// SSCC-96: serial shipping container code (TDS 1.13 §14.5.2).
    Sscc96 over SSCC {
        /// Builds an SSCC-96 from field values. `serial_reference` includes the extension
        /// digit as its first digit, as in the URI.
        ///
        /// # Errors
        /// Filter above 7, partition 7 or above, a company prefix or serial reference with
        /// more digits than the partition allows.
        new;
        /// Filter value (TDS §10.2: 2 full case, 6 unit load, others reserved).
        filter;
        /// Extension digit followed by the serial reference.
        serial_reference;
        /// The 96-bit binary encoding (reserved bits zero).
        to_bytes;
    }
}

scheme96! {
    /// GRAI-96: global returnable asset identifier (TDS 1.13 §14.5.4).
    Grai96 over GRAI {
        /// Builds a GRAI-96 from field values.
        ///
        /// # Errors
        /// Filter above 7, partition 7 or above, a company prefix or asset type with more
        /// digits than the partition allows (at partition 0 the asset type has none: it
        /// must be 0), a serial of more than 38 bits.
        new;
        /// Filter value (TDS §10.4: 0 all others, the rest reserved).
        filter;
        /// Asset type (empty at partition 0).
        asset_type;
        /// The 96-bit binary encoding.
        to_bytes;
        /// Serial number (an integer of at most 38 bits).
        serial;
    }
}

scheme96! {
    /// GIAI-96: global individual asset identifier (TDS 1.13 §14.5.5).
    Giai96 over GIAI {
        /// Builds a GIAI-96 from field values. The individual asset reference is an
        /// integer: references with leading zeros or letters need GIAI-202.
        ///
        /// # Errors
        /// Filter above 7, partition 7 or above, a company prefix with more digits than the
        /// partition allows, an asset reference wider than the partition's bits.
        new;
        /// Filter value (TDS §10.5: 0 all others, 1 rail vehicle).
        filter;
        /// Individual asset reference (no leading zeros).
        asset_reference;
        /// The 96-bit binary encoding.
        to_bytes;
    }
}

/// An EPC this module does not decode, kept bit for bit (TDS §12.1 EPC Raw URI).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawEpc {
    len: u8,
    /// Bytes past `len` are always zero, so the derived equality is the bytes' equality.
    bytes: [u8; MAX_EPC_BYTES],
}

impl RawEpc {
    /// The EPC bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// Length in bits.
    #[must_use]
    pub fn bit_len(&self) -> usize {
        usize::from(self.len) * 8
    }
    /// The header (first byte).
    #[must_use]
    pub fn header(&self) -> u8 {
        self.bytes[0]
    }
}

impl fmt::Debug for RawEpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawEpc(")?;
        write_hex(f, self.as_bytes())?;
        f.write_str(")")
    }
}

/// A decoded EPC. Construct by parsing ([`Epc::from_hex`], [`Epc::from_bytes`],
/// [`Epc::from_tag_uri`], [`Epc::from_pure_identity_uri`]) or from a scheme value.
/// `Display` writes the pure identity URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epc {
    Sgtin96(Sgtin96),
    Sscc96(Sscc96),
    Grai96(Grai96),
    Giai96(Giai96),
    /// Any other header; also EPCs whose length no 96-bit scheme here has.
    Raw(RawEpc),
}

fn hex_value(c: char) -> Option<u8> {
    // to_digit(16) < 16.
    c.to_digit(16).map(|d| d as u8)
}

fn write_hex<W: fmt::Write + ?Sized>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        w.write_char(char::from(HEX[usize::from(b >> 4)]))?;
        w.write_char(char::from(HEX[usize::from(b & 0x0F)]))?;
    }
    Ok(())
}

impl Epc {
    /// Parses EPC memory-bank hex: upper or lower case, spaces anywhere, an optional leading
    /// `0x`. Then decodes as [`Epc::from_bytes`].
    ///
    /// # Errors
    /// [`EpcError::BadHex`] with the 1-based character position, [`EpcError::Empty`],
    /// [`EpcError::OddLength`], [`EpcError::TooLong`], or any decoding error.
    pub fn from_hex(text: &str) -> Result<Self, EpcError> {
        let mut buf = [0u8; MAX_EPC_BYTES];
        let mut digits = 0usize;
        let trimmed = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let lead = text.len() - trimmed.len();
        let (body, skipped) = match trimmed.get(..2) {
            Some("0x" | "0X") => (&trimmed[2..], lead + 2),
            _ => (text, 0),
        };
        // Characters before `body` (ASCII whitespace and "0x") are one byte each.
        let offset = skipped;
        for (i, c) in body.chars().enumerate() {
            if c.is_ascii_whitespace() {
                continue;
            }
            let Some(d) = hex_value(c) else {
                return Err(EpcError::BadHex {
                    position: offset + i + 1,
                    found: c,
                });
            };
            if let Some(byte) = buf.get_mut(digits / 2) {
                *byte = if digits.is_multiple_of(2) {
                    d << 4
                } else {
                    *byte | d
                };
            }
            digits += 1;
        }
        if digits == 0 {
            return Err(EpcError::Empty);
        }
        if !digits.is_multiple_of(2) {
            return Err(EpcError::OddLength { digits });
        }
        if digits / 2 > MAX_EPC_BYTES {
            return Err(EpcError::TooLong { bytes: digits / 2 });
        }
        Self::from_bytes(&buf[..digits / 2])
    }

    /// Decodes an EPC binary encoding (the EPC memory bank from bit 20h, as many bytes as
    /// the PC word's length field says).
    ///
    /// # Errors
    /// [`EpcError::Empty`], [`EpcError::TooLong`]; for SGTIN-96, SSCC-96, GRAI-96 and
    /// GIAI-96 headers, [`EpcError::Truncated`] and the TDS validity tests (see the module
    /// docs). Other headers never fail: they decode to [`Epc::Raw`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EpcError> {
        let Some(&header) = bytes.first() else {
            return Err(EpcError::Empty);
        };
        if bytes.len() > MAX_EPC_BYTES {
            return Err(EpcError::TooLong { bytes: bytes.len() });
        }
        let layout = match header {
            HEADER_SGTIN_96 => &SGTIN,
            HEADER_SSCC_96 => &SSCC,
            HEADER_GRAI_96 => &GRAI,
            HEADER_GIAI_96 => &GIAI,
            _ => return Self::raw(bytes),
        };
        // TDS §14.4 steps 2 and 3: at least 96 bits, and only the first 96 count.
        let Some(epc) = bytes.first_chunk::<EPC96_BYTES>() else {
            return Err(EpcError::Truncated {
                scheme: layout.scheme,
                expected: 96,
                found: bytes.len() * 8,
            });
        };
        let mut wide = [0u8; 16];
        wide[16 - EPC96_BYTES..].copy_from_slice(epc);
        let v = u128::from_be_bytes(wide);
        Ok(match header {
            HEADER_SGTIN_96 => Self::Sgtin96(Sgtin96::decode(v)?),
            HEADER_SSCC_96 => Self::Sscc96(Sscc96::decode(v)?),
            HEADER_GRAI_96 => Self::Grai96(Grai96::decode(v)?),
            _ => Self::Giai96(Giai96::decode(v)?),
        })
    }

    /// Keeps any bytes as a raw EPC without decoding them (the TDS §15.2.2 fallback for
    /// EPCs that fail [`Epc::from_bytes`]).
    ///
    /// # Errors
    /// [`EpcError::Empty`], [`EpcError::TooLong`].
    pub fn raw(bytes: &[u8]) -> Result<Self, EpcError> {
        if bytes.is_empty() {
            return Err(EpcError::Empty);
        }
        let Ok(len) = u8::try_from(bytes.len()) else {
            return Err(EpcError::TooLong { bytes: bytes.len() });
        };
        let mut raw = RawEpc {
            len,
            bytes: [0; MAX_EPC_BYTES],
        };
        let Some(dst) = raw.bytes.get_mut(..bytes.len()) else {
            return Err(EpcError::TooLong { bytes: bytes.len() });
        };
        dst.copy_from_slice(bytes);
        Ok(Self::Raw(raw))
    }

    /// Encodes an EPC Tag URI (`urn:epc:tag:sgtin-96:3.0614141.812345.6789`, TDS §12.3)
    /// or parses an EPC Raw URI (`urn:epc:raw:96.x3074…`, hex form, whole bytes; decoded
    /// as [`Epc::from_bytes`]).
    ///
    /// # Errors
    /// [`EpcError::UriSyntax`], [`EpcError::UnsupportedScheme`], [`EpcError::FieldCount`],
    /// [`EpcError::ControlFields`] and the field errors of the scheme's `new`.
    pub fn from_tag_uri(uri: &str) -> Result<Self, EpcError> {
        const TAG: &str = "urn:epc:tag:";
        if let Some(rest) = uri.strip_prefix(RAW_PREFIX) {
            return parse_raw(rest);
        }
        let Some(rest) = uri.strip_prefix(TAG) else {
            return Err(syntax(uri, TAG, 0, "\"urn:epc:tag:\" or \"urn:epc:raw:\""));
        };
        if rest.starts_with('[') {
            return Err(EpcError::ControlFields);
        }
        let Some((scheme, body)) = rest.split_once(':') else {
            return Err(EpcError::UriSyntax {
                position: uri.chars().count() + 1,
                expected: "\":\" after the scheme",
            });
        };
        let layout = layout_for(scheme, |l| l.scheme)?;
        let (filter, fields) = match body.split_once('.') {
            Some((filter, fields)) => (filter, fields),
            None => (body, ""),
        };
        let filter = match filter.as_bytes() {
            [d @ b'0'..=b'9'] => d - b'0',
            _ => {
                return Err(EpcError::FieldSyntax {
                    scheme: layout.scheme,
                    field: "filter",
                    expected: "one digit 0-7",
                });
            }
        };
        parse_fields(layout, filter, fields, 1)
    }

    /// Encodes an EPC Pure Identity URI (`urn:epc:id:sgtin:0614141.812345.6789`, TDS §6)
    /// with the given filter value into the scheme's 96-bit encoding. An EPC Raw URI is
    /// accepted too (the filter is then ignored).
    ///
    /// # Errors
    /// As [`Epc::from_tag_uri`]; also a serial the 96-bit encoding cannot hold (letters,
    /// leading zeros, more than 38 bits: such EPCs need SGTIN-198 or GRAI-170).
    pub fn from_pure_identity_uri(uri: &str, filter: u8) -> Result<Self, EpcError> {
        const ID: &str = "urn:epc:id:";
        if let Some(rest) = uri.strip_prefix(RAW_PREFIX) {
            return parse_raw(rest);
        }
        let Some(rest) = uri.strip_prefix(ID) else {
            return Err(syntax(uri, ID, 0, "\"urn:epc:id:\" or \"urn:epc:raw:\""));
        };
        let Some((scheme, body)) = rest.split_once(':') else {
            return Err(EpcError::UriSyntax {
                position: uri.chars().count() + 1,
                expected: "\":\" after the scheme",
            });
        };
        let layout = layout_for(scheme, |l| l.id)?;
        parse_fields(layout, filter, body, 0)
    }

    /// Scheme name as in the tag URI: `sgtin-96`, `sscc-96`, `grai-96`, `giai-96` or `raw`.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Sgtin96(_) => SGTIN.scheme,
            Self::Sscc96(_) => SSCC.scheme,
            Self::Grai96(_) => GRAI.scheme,
            Self::Giai96(_) => GIAI.scheme,
            Self::Raw(_) => "raw",
        }
    }

    fn view(&self) -> View<'_> {
        match self {
            Self::Sgtin96(v) => View::Partitioned(v.parts()),
            Self::Sscc96(v) => View::Partitioned(v.parts()),
            Self::Grai96(v) => View::Partitioned(v.parts()),
            Self::Giai96(v) => View::Partitioned(v.parts()),
            Self::Raw(r) => View::Raw(r),
        }
    }

    fn parts(&self) -> Option<Parts> {
        match self.view() {
            View::Partitioned(p) => Some(p),
            View::Raw(_) => None,
        }
    }

    /// The header byte.
    #[must_use]
    pub fn header(&self) -> u8 {
        match self.view() {
            View::Partitioned(p) => p.layout.header,
            View::Raw(r) => r.header(),
        }
    }

    /// Length of the binary encoding in bits.
    #[must_use]
    pub fn bit_len(&self) -> usize {
        match self {
            Self::Raw(r) => r.bit_len(),
            _ => EPC96_BYTES * 8,
        }
    }

    /// Filter value, for the schemes that have one.
    #[must_use]
    pub fn filter(&self) -> Option<u8> {
        self.parts().map(|p| p.fields.filter)
    }

    /// Partition value, for the partitioned schemes.
    #[must_use]
    pub fn partition(&self) -> Option<u8> {
        self.parts().map(|p| p.fields.partition)
    }

    /// GS1 company prefix, for the GS1 schemes.
    #[must_use]
    pub fn company_prefix(&self) -> Option<Digits> {
        self.parts().map(|p| p.company_prefix())
    }

    /// The binary encoding: 12 bytes for the 96-bit schemes, the raw bytes otherwise.
    #[must_use]
    pub fn to_bytes(&self) -> heapless::Vec<u8, MAX_EPC_BYTES> {
        let fixed;
        let bytes: &[u8] = match self.view() {
            View::Partitioned(p) => {
                fixed = p.layout.pack(&p.fields);
                &fixed
            }
            View::Raw(r) => r.as_bytes(),
        };
        let mut out = heapless::Vec::new();
        // Every variant is at most MAX_EPC_BYTES long, so this cannot fail.
        let _ = out.extend_from_slice(bytes);
        out
    }

    /// Writes the binary encoding as upper-case hex.
    ///
    /// # Errors
    /// Only the writer's.
    pub fn write_hex<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write_hex(w, &self.to_bytes())
    }

    /// Writes the EPC Pure Identity URI (TDS §6.3), e.g.
    /// `urn:epc:id:sgtin:0614141.812345.6789`; for a raw EPC the Raw URI (TDS §15.2.3).
    ///
    /// # Errors
    /// Only the writer's.
    pub fn write_pure_identity_uri<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        match self.view() {
            View::Partitioned(p) => {
                let id = p.layout.id;
                write!(
                    w,
                    "urn:epc:id:{id}:{}.{}",
                    p.company_prefix(),
                    p.reference()
                )?;
                p.write_serial(w)
            }
            View::Raw(r) => write_raw_uri(w, r),
        }
    }

    /// Writes the EPC Tag URI (TDS §12.3), e.g. `urn:epc:tag:sgtin-96:3.0614141.812345.6789`;
    /// for a raw EPC the Raw URI (TDS §12.1).
    ///
    /// # Errors
    /// Only the writer's.
    pub fn write_tag_uri<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        match self.view() {
            View::Partitioned(p) => {
                let scheme = p.layout.scheme;
                let filter = p.fields.filter;
                let (cp, reference) = (p.company_prefix(), p.reference());
                write!(w, "urn:epc:tag:{scheme}:{filter}.{cp}.{reference}")?;
                p.write_serial(w)
            }
            View::Raw(r) => write_raw_uri(w, r),
        }
    }

    /// The EPC Pure Identity URI.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn pure_identity_uri(&self) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        // Writing to a String cannot fail.
        let _ = self.write_pure_identity_uri(&mut s);
        s
    }

    /// The EPC Tag URI.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn tag_uri(&self) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        // Writing to a String cannot fail.
        let _ = self.write_tag_uri(&mut s);
        s
    }

    /// The GS1 element string of the key this EPC carries (TDS §7: the indicator or
    /// extension digit moves to the front and the GS1 check digit is appended), e.g.
    /// `(01) 80614141123458 (21) 6789`; `None` for a raw EPC.
    #[must_use]
    pub fn gs1_element_string(&self) -> Option<ElementString<'_>> {
        match self {
            Self::Raw(_) => None,
            _ => Some(ElementString(self)),
        }
    }
}

impl fmt::Display for Epc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_pure_identity_uri(f)
    }
}

/// The GS1 element string of an [`Epc`] (see [`Epc::gs1_element_string`]).
#[derive(Debug, Clone, Copy)]
pub struct ElementString<'a>(&'a Epc);

impl fmt::Display for ElementString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Epc::Sgtin96(v) => {
                let (key, n) = gs1_key(v.company_prefix(), v.item_reference(), true);
                f.write_str("(01) ")?;
                write_ascii(f, &key[..n])?;
                write!(f, " (21) {}", v.serial)
            }
            Epc::Sscc96(v) => {
                let (key, n) = gs1_key(v.company_prefix(), v.serial_reference(), true);
                f.write_str("(00) ")?;
                write_ascii(f, &key[..n])
            }
            Epc::Grai96(v) => {
                // AI 8003 = a padding zero, the 13-digit GRAI with check digit, the serial.
                let (key, n) = gs1_key(v.company_prefix(), v.asset_type(), false);
                f.write_str("(8003) 0")?;
                write_ascii(f, &key[..n])?;
                write!(f, "{}", v.serial)
            }
            Epc::Giai96(v) => write!(f, "(8004) {}{}", v.company_prefix(), v.asset_reference()),
            Epc::Raw(_) => Ok(()),
        }
    }
}

/// The digits of a GS1 key: company prefix then reference, the reference's first digit
/// (SGTIN indicator, SSCC extension digit) moved to the front when `lead_moves`, then the
/// GS1 check digit. Returns the buffer and the number of digits used (at most 18).
fn gs1_key(cp: Digits, reference: Digits, lead_moves: bool) -> ([u8; 18], usize) {
    let mut key = [0u8; 18];
    let body = cp.width() + reference.width();
    if lead_moves && reference.width() > 0 {
        let mut r = [0u8; 17];
        reference.write_ascii(&mut r[..reference.width()]);
        key[0] = r[0];
        cp.write_ascii(&mut key[1..=cp.width()]);
        key[cp.width() + 1..body].copy_from_slice(&r[1..reference.width()]);
    } else {
        cp.write_ascii(&mut key[..cp.width()]);
        reference.write_ascii(&mut key[cp.width()..body]);
    }
    // Only ASCII digits were written, so the check digit exists.
    key[body] = b'0' + gs1_check_digit(&key[..body]).unwrap_or(0);
    (key, body + 1)
}

fn write_ascii(f: &mut fmt::Formatter<'_>, digits: &[u8]) -> fmt::Result {
    for &d in digits {
        f.write_char(char::from(d))?;
    }
    Ok(())
}

/// GS1 mod-10 check digit (GS1 General Specifications §7.9.1: weights 3, 1, 3, … from the
/// rightmost digit) over ASCII digits; `None` if a byte is not a digit.
#[must_use]
pub fn gs1_check_digit(digits: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        let weight = if i % 2 == 0 { 3 } else { 1 };
        sum += weight * u32::from(d - b'0');
    }
    // (10 − sum mod 10) mod 10 < 10.
    Some(((10 - sum % 10) % 10) as u8)
}

const RAW_PREFIX: &str = "urn:epc:raw:";

fn write_raw_uri<W: fmt::Write + ?Sized>(w: &mut W, r: &RawEpc) -> fmt::Result {
    write!(w, "{RAW_PREFIX}{}.x", r.bit_len())?;
    write_hex(w, r.as_bytes())
}

/// Parses the part of a raw URI after `urn:epc:raw:`: `<bits>.x<HEX>`.
fn parse_raw(rest: &str) -> Result<Epc, EpcError> {
    let at = RAW_PREFIX.len();
    let Some((bits, hex)) = rest.split_once(".x") else {
        return Err(EpcError::UriSyntax {
            position: at + 1,
            expected: "<bits>.x<hex>",
        });
    };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EpcError::UriSyntax {
            position: at + 1,
            expected: "a decimal bit length",
        });
    }
    if let Some(i) = hex.find(|c: char| !c.is_ascii_hexdigit()) {
        let found = hex[i..].chars().next().unwrap_or(' ');
        return Err(EpcError::BadHex {
            position: at + bits.len() + 2 + hex[..i].chars().count() + 1,
            found,
        });
    }
    let declared: usize = bits.parse().unwrap_or(usize::MAX);
    if !declared.is_multiple_of(8) || declared / 4 != hex.len() {
        return Err(EpcError::RawLength {
            bits: declared,
            hex_digits: hex.len(),
        });
    }
    Epc::from_hex(hex)
}

/// Finds the layout whose `name(layout)` is `scheme`.
fn layout_for(
    scheme: &str,
    name: fn(&Layout) -> &'static str,
) -> Result<&'static Layout, EpcError> {
    for layout in [&SGTIN, &SSCC, &GRAI, &GIAI] {
        if name(layout) == scheme {
            return Ok(layout);
        }
    }
    let mut shown = heapless::String::new();
    for c in scheme.chars() {
        if shown.push(c).is_err() {
            break;
        }
    }
    Err(EpcError::UnsupportedScheme { scheme: shown })
}

/// Reports where `uri` first departs from `prefix` (1-based character position).
fn syntax(uri: &str, prefix: &str, from: usize, expected: &'static str) -> EpcError {
    let same = uri
        .chars()
        .zip(prefix.chars())
        .take_while(|(a, b)| a == b)
        .count();
    EpcError::UriSyntax {
        position: from + same + 1,
        expected,
    }
}

/// Splits `s` at dots into exactly `N` parts. `first` is the number of fields already
/// consumed before `s` (the filter), counted in the error so it speaks of the whole URI.
fn split_fields<'a, const N: usize>(
    scheme: &'static str,
    s: &'a str,
    first: usize,
) -> Result<[&'a str; N], EpcError> {
    let mut out = [""; N];
    let mut count = 0usize;
    for (i, part) in s.split('.').enumerate() {
        if let Some(slot) = out.get_mut(i) {
            *slot = part;
        }
        count += 1;
    }
    if count != N {
        return Err(EpcError::FieldCount {
            scheme,
            expected: N + first,
            found: count + first,
        });
    }
    Ok(out)
}

/// Value of a field of decimal digits (empty is 0).
fn digits_value(scheme: &'static str, field: &'static str, s: &str) -> Result<u64, EpcError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EpcError::FieldSyntax {
            scheme,
            field,
            expected: "decimal digits",
        });
    }
    let mut v = 0u64;
    for b in s.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(EpcError::TooManyBits {
                scheme,
                field,
                bits: 64,
            })?;
    }
    Ok(v)
}

/// Value of an integer field (TDS §14.3.1 "Integer" encoding: digits, no leading zeros,
/// below 2^bits).
fn integer_value(
    scheme: &'static str,
    field: &'static str,
    s: &str,
    bits: u32,
) -> Result<u64, EpcError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EpcError::FieldSyntax {
            scheme,
            field,
            expected: "decimal digits (other values need a variable-length scheme)",
        });
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(EpcError::LeadingZero { scheme, field });
    }
    let too_wide = EpcError::TooManyBits {
        scheme,
        field,
        bits,
    };
    let v = digits_value(scheme, field, s).map_err(|_| too_wide.clone())?;
    if u128::from(v) > mask(bits) {
        return Err(too_wide);
    }
    Ok(v)
}

/// Parses the dot-separated fields after the filter (tag URI) or the scheme (pure identity
/// URI). `first` is the number of fields already consumed (the filter), for messages.
fn parse_fields(
    layout: &'static Layout,
    filter: u8,
    body: &str,
    first: usize,
) -> Result<Epc, EpcError> {
    let scheme = layout.scheme;
    let has_serial = matches!(layout.header, HEADER_SGTIN_96 | HEADER_GRAI_96);
    let (cp, reference, serial) = if has_serial {
        let [c, r, s] = split_fields::<3>(scheme, body, first)?;
        (c, r, s)
    } else {
        let [c, r] = split_fields::<2>(scheme, body, first)?;
        (c, r, "")
    };
    if cp.is_empty() || !cp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EpcError::FieldSyntax {
            scheme,
            field: "company prefix",
            expected: "decimal digits",
        });
    }
    if !(6..=12).contains(&cp.len()) {
        return Err(EpcError::CompanyPrefixLength {
            scheme,
            digits: cp.len(),
        });
    }
    // In every partition table, partition = 12 − company prefix digits.
    let partition = (12 - cp.len()) as u8;
    let row = layout.row(partition)?;
    let company_prefix = digits_value(scheme, "company prefix", cp)?;
    let reference_value = if layout.unpadded {
        integer_value(scheme, layout.reference, reference, row.ref_bits)?
    } else {
        if reference.len() != usize::from(row.ref_digits) {
            if !reference.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EpcError::FieldSyntax {
                    scheme,
                    field: layout.reference,
                    expected: "decimal digits",
                });
            }
            return Err(EpcError::ReferenceLength {
                scheme,
                field: layout.reference,
                company_prefix_digits: cp.len(),
                expected: row.ref_digits,
                found: reference.len(),
            });
        }
        digits_value(scheme, layout.reference, reference)?
    };
    let serial = if has_serial {
        integer_value(scheme, "serial", serial, SERIAL_BITS)?
    } else {
        0
    };
    let (f, p, c, r) = (filter, partition, company_prefix, reference_value);
    Ok(match layout.header {
        HEADER_SGTIN_96 => Epc::Sgtin96(Sgtin96::new(f, p, c, r, serial)?),
        HEADER_GRAI_96 => Epc::Grai96(Grai96::new(f, p, c, r, serial)?),
        HEADER_SSCC_96 => Epc::Sscc96(Sscc96::new(f, p, c, r)?),
        _ => Epc::Giai96(Giai96::new(f, p, c, r)?),
    })
}

#[cfg(test)]
mod tests {
    // Test inputs are literals known to be good; unwrapping them is the assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Pure identity and tag URI written into a fixed buffer (no allocation needed).
    fn uris(epc: &Epc) -> (heapless::String<128>, heapless::String<128>) {
        let mut id = heapless::String::new();
        let mut tag = heapless::String::new();
        epc.write_pure_identity_uri(&mut id).unwrap();
        epc.write_tag_uri(&mut tag).unwrap();
        (id, tag)
    }

    fn hex(epc: &Epc) -> heapless::String<128> {
        let mut s = heapless::String::new();
        epc.write_hex(&mut s).unwrap();
        s
    }

    /// Bytes of a 96-bit EPC with arbitrary (possibly invalid) fields.
    fn packed(
        layout: &Layout,
        filter: u8,
        partition: u8,
        cp: u64,
        reference: u64,
        low: u64,
    ) -> [u8; 12] {
        // `pack` clamps the partition to a table row; put the real one back for value 7.
        let mut b = layout.pack(&Fields {
            filter,
            partition: partition.min(6),
            company_prefix: cp,
            reference,
            low,
        });
        b[1] = (b[1] & !0b0001_1100) | (partition << 2);
        b
    }

    #[test]
    fn decodes_tds_appendix_e3_sgtin() {
        let epc = Epc::from_hex("3074257BF7194E4000001A85").unwrap();
        let Epc::Sgtin96(v) = epc else {
            panic!("{epc:?}")
        };
        assert_eq!(
            (
                v.filter(),
                v.partition(),
                v.company_prefix().value(),
                v.serial()
            ),
            (3, 5, 614_141, 6789)
        );
        assert_eq!(
            (
                v.company_prefix().width(),
                v.item_reference().value(),
                v.item_reference().width()
            ),
            (7, 812_345, 6)
        );
        let (id, tag) = uris(&epc);
        assert_eq!(id, "urn:epc:id:sgtin:0614141.812345.6789");
        assert_eq!(tag, "urn:epc:tag:sgtin-96:3.0614141.812345.6789");
        assert_eq!(epc.scheme(), "sgtin-96");
    }

    #[test]
    fn decodes_tds_appendix_e3_sscc_grai_giai() {
        for (hex_in, id, tag) in [
            (
                "3174257BF4499602D2000000",
                "urn:epc:id:sscc:0614141.1234567890",
                "urn:epc:tag:sscc-96:3.0614141.1234567890",
            ),
            (
                "3374257BF40C0E400000162E",
                "urn:epc:id:grai:0614141.12345.5678",
                "urn:epc:tag:grai-96:3.0614141.12345.5678",
            ),
            (
                "3474257BF40000000000162E",
                "urn:epc:id:giai:0614141.5678",
                "urn:epc:tag:giai-96:3.0614141.5678",
            ),
        ] {
            let epc = Epc::from_hex(hex_in).unwrap();
            assert_eq!(
                uris(&epc),
                (id.try_into().unwrap(), tag.try_into().unwrap()),
                "{hex_in}"
            );
            assert_eq!(hex(&Epc::from_tag_uri(tag).unwrap()), hex_in);
        }
    }

    #[test]
    fn grai_at_partition_zero_has_an_empty_asset_type() {
        let epc = Epc::from_hex("3300393243FF740000000000").unwrap();
        assert_eq!(uris(&epc).0, "urn:epc:id:grai:061414113245..0");
        assert_eq!(
            Epc::from_tag_uri("urn:epc:tag:grai-96:0.061414113245..0").unwrap(),
            epc
        );
    }

    #[test]
    fn accepts_lower_case_spaces_and_0x() {
        let want = Epc::from_hex("3074257BF7194E4000001A85").unwrap();
        for text in [
            "3074257bf7194e4000001a85",
            "0x3074257BF7194E4000001A85",
            " 0X30 74 25 7B F7 19 4E 40 00 00 1A 85\t",
        ] {
            assert_eq!(Epc::from_hex(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_hex_naming_the_character_and_position() {
        for (text, position, found) in [
            ("3074257BF7194E4000001AZ5", 23, 'Z'),
            ("0x30G4", 5, 'G'),
            (" 30é4", 4, 'é'),
            // A second "0x" is not a prefix.
            ("30 0x", 5, 'x'),
        ] {
            assert_eq!(
                Epc::from_hex(text),
                Err(EpcError::BadHex { position, found }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_empty_odd_and_overlong_input() {
        assert_eq!(Epc::from_hex(""), Err(EpcError::Empty));
        assert_eq!(Epc::from_hex("  0x "), Err(EpcError::Empty));
        assert_eq!(Epc::from_bytes(&[]), Err(EpcError::Empty));
        assert_eq!(
            Epc::from_hex("3074257BF7194E4000001A8"),
            Err(EpcError::OddLength { digits: 23 })
        );
        let long = "AB".repeat(63);
        assert_eq!(Epc::from_hex(&long), Err(EpcError::TooLong { bytes: 63 }));
        assert_eq!(
            Epc::from_bytes(&[0xAB; 63]),
            Err(EpcError::TooLong { bytes: 63 })
        );
        assert!(matches!(Epc::from_hex(&"AB".repeat(62)), Ok(Epc::Raw(r)) if r.bit_len() == 496));
    }

    #[test]
    fn rejects_a_known_header_with_fewer_than_96_bits() {
        assert_eq!(
            Epc::from_hex("3074257BF7194E4000001A"),
            Err(EpcError::Truncated {
                scheme: "sgtin-96",
                expected: 96,
                found: 88
            })
        );
        assert_eq!(
            Epc::from_hex("31"),
            Err(EpcError::Truncated {
                scheme: "sscc-96",
                expected: 96,
                found: 8
            })
        );
    }

    #[test]
    fn drops_word_padding_after_96_bits() {
        // A 128-bit EPC bank holding an SGTIN-96 (TDS §14.4 step 3).
        let epc = Epc::from_hex("3074257BF7194E4000001A85 00000000").unwrap();
        assert_eq!(hex(&epc), "3074257BF7194E4000001A85");
    }

    #[test]
    fn unknown_headers_and_other_lengths_decode_to_the_raw_uri() {
        for (input, uri) in [
            (
                "E2801160600002054E1D2E3F",
                "urn:epc:raw:96.xE2801160600002054E1D2E3F",
            ),
            (
                "35000000000000000000002A",
                "urn:epc:raw:96.x35000000000000000000002A",
            ),
            ("00", "urn:epc:raw:8.x00"),
            ("f1ab", "urn:epc:raw:16.xF1AB"),
        ] {
            let epc = Epc::from_hex(input).unwrap();
            assert_eq!(epc.scheme(), "raw");
            assert_eq!(
                uris(&epc),
                (uri.try_into().unwrap(), uri.try_into().unwrap())
            );
            assert_eq!(Epc::from_tag_uri(uri), Ok(epc));
            assert_eq!(epc.filter(), None);
            assert!(epc.gs1_element_string().is_none());
        }
    }

    #[test]
    fn rejects_reserved_partition() {
        let b = packed(&SGTIN, 3, 7, 0, 0, 0);
        assert_eq!(
            Epc::from_bytes(&b),
            Err(EpcError::ReservedPartition { scheme: "sgtin-96" })
        );
        let b = packed(&GIAI, 0, 7, 0, 0, 0);
        assert_eq!(
            Epc::from_bytes(&b),
            Err(EpcError::ReservedPartition { scheme: "giai-96" })
        );
        assert_eq!(
            Sscc96::new(0, 7, 1, 1),
            Err(EpcError::ReservedPartition { scheme: "sscc-96" })
        );
        assert_eq!(
            Sscc96::new(0, 8, 1, 1),
            Err(EpcError::PartitionOutOfRange { value: 8 })
        );
    }

    #[test]
    fn partition_tables_hold_the_rows_of_the_standard() {
        // Rows 0 and 6 of TDS 1.13 Tables 14-2, 14-5, 14-10 and 14-13: (M, L, N, K).
        for (layout, first, last) in [
            (&SGTIN, (40, 12, 4, 1), (20, 6, 24, 7)),
            (&SSCC, (40, 12, 18, 5), (20, 6, 38, 11)),
            (&GRAI, (40, 12, 4, 0), (20, 6, 24, 6)),
            (&GIAI, (40, 12, 42, 13), (20, 6, 62, 19)),
        ] {
            let row = |r: Row| (r.cp_bits, r.cp_digits, r.ref_bits, r.ref_digits);
            assert_eq!(row(layout.table[0]), first, "{}", layout.scheme);
            assert_eq!(row(layout.table[6]), last, "{}", layout.scheme);
        }
    }

    /// The error for a field whose value needs more digits than its partition row allows.
    fn overflow(
        scheme: &'static str,
        field: &'static str,
        value: u64,
        digits: u8,
        partition: u8,
    ) -> Result<Epc, EpcError> {
        Err(EpcError::DigitsOverflow {
            scheme,
            field,
            value,
            digits,
            partition,
        })
    }

    #[test]
    fn rejects_fields_needing_more_digits_than_the_partition_allows() {
        // (bytes, scheme, field, value, digits allowed, partition)
        let cases = [
            // Partition 5: 24 bits could hold 16,777,215 but only 7 digits are allowed.
            (
                packed(&SGTIN, 3, 5, 10_000_000, 812_345, 1),
                "sgtin-96",
                "company prefix",
                10_000_000,
                7,
                5,
            ),
            // Partition 0: 4 bits, 1 digit.
            (
                packed(&SGTIN, 1, 0, 1, 10, 1),
                "sgtin-96",
                "item reference",
                10,
                1,
                0,
            ),
            (
                packed(&SSCC, 0, 5, 614_141, 10_000_000_000, 0),
                "sscc-96",
                "serial reference",
                10_000_000_000,
                10,
                5,
            ),
            (
                packed(&GRAI, 0, 0, 61_414_113_245, 3, 0),
                "grai-96",
                "asset type",
                3,
                0,
                0,
            ),
        ];
        for (b, scheme, field, value, digits, partition) in cases {
            assert_eq!(
                Epc::from_bytes(&b),
                overflow(scheme, field, value, digits, partition)
            );
        }
        // 9,999,999 is the largest 7-digit prefix and decodes.
        assert!(Epc::from_bytes(&packed(&SGTIN, 3, 5, 9_999_999, 812_345, 1)).is_ok());
    }

    #[test]
    fn rejects_sscc_reserved_bits() {
        assert_eq!(
            Epc::from_hex("3174257BF4499602D2000100"),
            Err(EpcError::ReservedBits {
                scheme: "sscc-96",
                bits: 24,
                found: 0x100
            })
        );
    }

    #[test]
    fn serial_limits_are_38_bits() {
        let max = Epc::from_tag_uri("urn:epc:tag:sgtin-96:1.0614141.812345.274877906943").unwrap();
        let b = max.to_bytes();
        let low = u64::from_be_bytes(b[4..12].try_into().unwrap());
        assert_eq!(low & ((1 << 38) - 1), (1 << 38) - 1, "serial bits all ones");
        assert_eq!(Epc::from_bytes(&b), Ok(max));
        assert_eq!(
            Epc::from_tag_uri("urn:epc:tag:sgtin-96:1.0614141.812345.274877906944"),
            Err(EpcError::TooManyBits {
                scheme: "sgtin-96",
                field: "serial",
                bits: 38
            })
        );
        assert_eq!(
            Sgtin96::new(1, 5, 614_141, 812_345, 1 << 38),
            Err(EpcError::TooManyBits {
                scheme: "sgtin-96",
                field: "serial",
                bits: 38
            })
        );
        assert_eq!(
            Epc::from_tag_uri("urn:epc:tag:grai-96:0.0614141.12345.99999999999999999999999"),
            Err(EpcError::TooManyBits {
                scheme: "grai-96",
                field: "serial",
                bits: 38
            })
        );
    }

    #[test]
    fn giai_asset_reference_is_limited_by_bits_not_digits() {
        // Partition 6: up to 19 digits but only 62 bits: 2^62 = 4,611,686,018,427,387,904.
        assert!(Epc::from_tag_uri("urn:epc:tag:giai-96:0.123456.4611686018427387903").is_ok());
        assert_eq!(
            Epc::from_tag_uri("urn:epc:tag:giai-96:0.123456.4611686018427387904"),
            Err(EpcError::TooManyBits {
                scheme: "giai-96",
                field: "individual asset reference",
                bits: 62
            })
        );
        assert_eq!(
            Epc::from_tag_uri("urn:epc:tag:giai-96:0.123456.0042"),
            Err(EpcError::LeadingZero {
                scheme: "giai-96",
                field: "individual asset reference"
            })
        );
    }

    #[test]
    fn tag_uri_errors_name_the_problem() {
        use EpcError as E;
        let cases: [(&str, EpcError); 13] = [
            (
                "urn:epc:id:sgtin:0614141.812345.6789",
                E::UriSyntax {
                    position: 9,
                    expected: "\"urn:epc:tag:\" or \"urn:epc:raw:\"",
                },
            ),
            (
                "urn:epc:tag:sgtin-198:3.0614141.812345.abc",
                E::UnsupportedScheme {
                    scheme: "sgtin-198".try_into().unwrap(),
                },
            ),
            (
                "urn:epc:tag:[umi=1]sgtin-96:3.0614141.812345.6789",
                E::ControlFields,
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141.812345",
                E::FieldCount {
                    scheme: "sgtin-96",
                    expected: 4,
                    found: 3,
                },
            ),
            (
                "urn:epc:tag:sscc-96:3.0614141.1234567890.1",
                E::FieldCount {
                    scheme: "sscc-96",
                    expected: 3,
                    found: 4,
                },
            ),
            (
                "urn:epc:tag:sgtin-96:8.0614141.812345.6789",
                E::FilterOutOfRange { value: 8 },
            ),
            (
                "urn:epc:tag:sgtin-96:x.0614141.812345.6789",
                E::FieldSyntax {
                    scheme: "sgtin-96",
                    field: "filter",
                    expected: "one digit 0-7",
                },
            ),
            (
                "urn:epc:tag:sgtin-96:3.06141.812345.6789",
                E::CompanyPrefixLength {
                    scheme: "sgtin-96",
                    digits: 5,
                },
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141234567.8.6789",
                E::CompanyPrefixLength {
                    scheme: "sgtin-96",
                    digits: 13,
                },
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141.81234.6789",
                E::ReferenceLength {
                    scheme: "sgtin-96",
                    field: "item reference",
                    company_prefix_digits: 7,
                    expected: 6,
                    found: 5,
                },
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141.812345.06789",
                E::LeadingZero {
                    scheme: "sgtin-96",
                    field: "serial",
                },
            ),
            (
                "urn:epc:tag:sscc-96:3.06141A1.1234567890",
                E::FieldSyntax {
                    scheme: "sscc-96",
                    field: "company prefix",
                    expected: "decimal digits",
                },
            ),
            (
                "urn:epc:raw:96.x3074",
                E::RawLength {
                    bits: 96,
                    hex_digits: 4,
                },
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(Epc::from_tag_uri(uri), Err(want), "{uri}");
        }
    }

    #[test]
    fn pure_identity_uri_encodes_with_the_given_filter() {
        let epc = Epc::from_pure_identity_uri("urn:epc:id:sscc:0614141.1234567890", 3).unwrap();
        assert_eq!(hex(&epc), "3174257BF4499602D2000000");
        assert_eq!(
            Epc::from_pure_identity_uri("urn:epc:id:sgtin:0614141.812345.ABC", 0),
            Err(EpcError::FieldSyntax {
                scheme: "sgtin-96",
                field: "serial",
                expected: "decimal digits (other values need a variable-length scheme)"
            })
        );
    }

    #[test]
    fn gs1_element_strings_move_the_indicator_and_add_the_check_digit() {
        for (uri, want) in [
            (
                "urn:epc:id:sgtin:0614141.812345.6789",
                "(01) 80614141123458 (21) 6789",
            ),
            (
                "urn:epc:id:sscc:0614141.1234567890",
                "(00) 106141412345678908",
            ),
            (
                "urn:epc:id:grai:0614141.12345.5678",
                "(8003) 006141411234525678",
            ),
            ("urn:epc:id:giai:0614141.5678", "(8004) 06141415678"),
            (
                "urn:epc:id:sscc:061414123456.00000",
                "(00) 006141412345600001",
            ),
        ] {
            let epc = Epc::from_pure_identity_uri(uri, 0).unwrap();
            let mut s: heapless::String<64> = heapless::String::new();
            write!(s, "{}", epc.gs1_element_string().unwrap()).unwrap();
            assert_eq!(s, want, "{uri}");
        }
    }

    #[test]
    fn gs1_check_digit_matches_the_general_specifications() {
        assert_eq!(gs1_check_digit(b"8061414112345"), Some(8));
        assert_eq!(gs1_check_digit(b"10614141234567890"), Some(8));
        assert_eq!(gs1_check_digit(b"061414112345"), Some(2));
        assert_eq!(gs1_check_digit(b"06141411234A"), None);
    }

    #[test]
    fn digits_of_width_zero_print_nothing() {
        let mut s: heapless::String<8> = heapless::String::new();
        write!(s, "[{}]", Digits { value: 0, width: 0 }).unwrap();
        assert_eq!(s, "[]");
    }

    #[test]
    fn max_epc_bytes_matches_the_link_limit() {
        assert_eq!(MAX_EPC_BYTES, crate::link::MAX_EPC_BYTES);
    }

    #[test]
    fn error_messages_read_well() {
        let mut s: heapless::String<128> = heapless::String::new();
        write!(
            s,
            "{}",
            EpcError::BadHex {
                position: 3,
                found: 'Z'
            }
        )
        .unwrap();
        assert_eq!(s, "character 3 ('Z') is not a hex digit");
        s.clear();
        write!(s, "{}", EpcError::TooLong { bytes: 63 }).unwrap();
        assert_eq!(s, "EPC of 63 bytes is longer than the Gen2 maximum of 62");
    }
}
