//! Where exported events happened: SGLN read points and business locations, the URI
//! base for gates without one, each gate's time zone ([`ExportConfig`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use protocol::schema::{GateId, LaneId};
use serde::{Deserialize, Serialize};

use super::DEFAULT_LOCATION_BASE;

/// Why an export setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{value:?} is not an SGLN pure identity URI: {why} (expected urn:epc:id:sgln:<company prefix>.<location reference>.<extension>, TDS 2.0 §6.3.3)"
    )]
    BadSgln { value: String, why: &'static str },
    #[error("location_base {value:?}: {why}")]
    BadBase { value: String, why: &'static str },
    #[error("time zone {value:?}: {why}")]
    BadZone { value: String, why: String },
}

/// An SGLN pure identity URI (`urn:epc:id:sgln:0614141.00777.GATE3`, GS1 TDS 2.0 §6.3.3):
/// company prefix and location reference together 12 digits (the GLN without its check
/// digit), the prefix 6 to 12 of them, then an extension of 1 to 20 characters from the
/// GS1 AI encodable set in URI form (`%HH` for the escaped ones; `0` means "no
/// extension").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sgln(String);

impl Sgln {
    /// Parses an SGLN pure identity URI.
    ///
    /// # Errors
    /// [`LocationError::BadSgln`] saying which part is wrong.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why| LocationError::BadSgln {
            value: s.to_owned(),
            why,
        };
        let rest = s
            .strip_prefix("urn:epc:id:sgln:")
            .ok_or_else(|| bad("does not start with urn:epc:id:sgln:"))?;
        let mut parts = rest.splitn(3, '.');
        let (Some(prefix), Some(location), Some(ext)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("needs three parts separated by '.'"));
        };
        if !(prefix.bytes().all(|b| b.is_ascii_digit())
            && location.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("company prefix and location reference must be digits"));
        }
        if !(6..=12).contains(&prefix.len()) {
            return Err(bad("the company prefix must have 6 to 12 digits"));
        }
        if prefix.len() + location.len() != 12 {
            return Err(bad(
                "company prefix and location reference must have 12 digits together",
            ));
        }
        let mut chars = 0usize;
        let b = ext.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .ok_or_else(|| bad("'%' must be followed by two hex digits"))?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(bad("'%' must be followed by two hex digits"));
                    }
                    i += 3;
                }
                c if c.is_ascii_alphanumeric() || b"!'()*+,-.:;=_".contains(&c) => i += 1,
                _ => {
                    return Err(bad(
                        "the extension holds a character outside the GS1 AI encodable set",
                    ));
                }
            }
            chars += 1;
        }
        if !(1..=20).contains(&chars) {
            return Err(bad("the extension must have 1 to 20 characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The URI.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The base of the URIs read points and business locations get when no SGLN is
/// configured: `<base>/gate/<gate>` and `<base>/gate/<gate>/lane/<lane>` (gate and lane
/// names are `[A-Za-z0-9._-]`, so they need no escaping). An absolute `http(s)` URI without
/// query or fragment; a trailing `/` is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LocationBase(String);

impl LocationBase {
    /// Parses a base URI.
    ///
    /// # Errors
    /// [`LocationError::BadBase`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why| LocationError::BadBase {
            value: s.to_owned(),
            why,
        };
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| bad("must start with https:// or http://"))?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        // RFC 3986 unreserved characters plus the path and authority delimiters we allow.
        if !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b))
        {
            return Err(bad(
                "may hold only letters, digits and - . _ ~ / : @ (no query, fragment, spaces or escapes)",
            ));
        }
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }

    /// The base, without a trailing `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LocationBase {
    fn default() -> Self {
        Self(DEFAULT_LOCATION_BASE.to_owned())
    }
}

/// The time zone a gate's `eventTimeZoneOffset` is taken in: `UTC`, a fixed offset
/// (`-05:00`), or an IANA name (`America/Chicago`, from the system's time zone database),
/// whose offset then follows daylight saving time at each event.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Parses a zone setting.
    ///
    /// # Errors
    /// [`LocationError::BadZone`] when it is neither an offset nor a known IANA name.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why: String| LocationError::BadZone {
            value: s.to_owned(),
            why,
        };
        let tz = if s == "UTC" || s == "Z" {
            TimeZone::UTC
        } else if let Some(rest) = s.strip_prefix(['+', '-']) {
            // ±HH:MM, two digits each (ISO 8601 extended form, as EPCIS writes offsets).
            let b = rest.as_bytes();
            let two = |i: usize| {
                b.get(i..i + 2)
                    .filter(|d| d.iter().all(u8::is_ascii_digit))
                    .map(|d| i32::from(d[0] - b'0') * 10 + i32::from(d[1] - b'0'))
            };
            let (Some(h), Some(m), 5, Some(b':')) = (two(0), two(3), b.len(), b.get(2).copied())
            else {
                return Err(bad("a fixed offset is written ±HH:MM".into()));
            };
            let secs = (h * 3600 + m * 60) * if s.starts_with('-') { -1 } else { 1 };
            // EPCIS 2.0 JSON schema: eventTimeZoneOffset from -13:59 to +14:00.
            if m >= 60 || secs > 14 * 3600 || secs <= -14 * 3600 {
                return Err(bad(
                    "offsets range from -13:59 to +14:00 (EPCIS 2.0 eventTimeZoneOffset)".into(),
                ));
            }
            let off = Offset::from_seconds(secs).map_err(|e| bad(e.to_string()))?;
            TimeZone::fixed(off)
        } else {
            TimeZone::get(s).map_err(|e| bad(e.to_string()))?
        };
        Ok(Self {
            name: s.to_owned(),
            tz,
        })
    }

    /// The setting as written.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `eventTimeZoneOffset` at `at`: `±HH:MM` (EPCIS 2.0 §7.4.1; seconds of historical
    /// offsets are dropped, the schema has none).
    #[must_use]
    pub fn offset_at(&self, at: Timestamp) -> String {
        let secs = self.tz.to_offset(at).seconds();
        let sign = if secs < 0 { '-' } else { '+' };
        let mins = secs.unsigned_abs() / 60;
        format!("{sign}{:02}:{:02}", mins / 60, mins % 60)
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Zone {}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// Reads each setting type from its text with its `parse`, so a configuration file is
/// held to the same rules (and gets the same message) as any other caller.
macro_rules! deserialize_by_parse {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

deserialize_by_parse!(Sgln, LocationBase, Zone);

/// Where one gate is, for EPCIS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateLocations {
    /// The gate's time zone (the export's `time_zone` when absent).
    #[serde(default)]
    pub time_zone: Option<Zone>,
    /// SGLN of the gate as a business location.
    #[serde(default)]
    pub biz_location: Option<Sgln>,
    /// SGLN of each lane as a read point.
    #[serde(default)]
    pub read_points: BTreeMap<LaneId, Sgln>,
}

/// The `[export]` section of central's configuration.
///
/// ```toml
/// [export]
/// location_base = "https://id.example.invalid/aeogate"
/// time_zone = "UTC"
/// [export.gates.P1-G1]
/// time_zone = "America/Chicago"
/// biz_location = "urn:epc:id:sgln:0614141.00777.0"
/// read_points = { L1 = "urn:epc:id:sgln:0614141.00777.GATE3" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Base of the URIs of gates and lanes without an SGLN.
    #[serde(default)]
    pub location_base: LocationBase,
    /// Time zone of gates that name none.
    #[serde(default)]
    pub time_zone: Zone,
    /// Per-gate locations and time zones.
    #[serde(default)]
    pub gates: BTreeMap<GateId, GateLocations>,
}

impl ExportConfig {
    /// `readPoint` id of a lane: its SGLN, else `<base>/gate/<gate>/lane/<lane>`.
    #[must_use]
    pub fn read_point(&self, gate: &GateId, lane: &LaneId) -> String {
        match self.gates.get(gate).and_then(|g| g.read_points.get(lane)) {
            Some(sgln) => sgln.as_str().to_owned(),
            None => format!("{}/gate/{gate}/lane/{lane}", self.location_base.as_str()),
        }
    }

    /// `bizLocation` id of a gate: its SGLN, else `<base>/gate/<gate>`.
    #[must_use]
    pub fn biz_location(&self, gate: &GateId) -> String {
        match self.gates.get(gate).and_then(|g| g.biz_location.as_ref()) {
            Some(sgln) => sgln.as_str().to_owned(),
            None => format!("{}/gate/{gate}", self.location_base.as_str()),
        }
    }

    /// The time zone of a gate.
    #[must_use]
    pub fn zone(&self, gate: &GateId) -> &Zone {
        self.gates
            .get(gate)
            .and_then(|g| g.time_zone.as_ref())
            .unwrap_or(&self.time_zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgln_accepts_the_gs1_example_and_names_what_is_wrong() {
        assert!(Sgln::parse("urn:epc:id:sgln:0614141.00777.GATE3").is_ok());
        assert!(Sgln::parse("urn:epc:id:sgln:0614141.00777.0").is_ok());
        for (bad, why) in [
            ("urn:epc:id:sgtin:0614141.00777.0", "does not start"),
            ("urn:epc:id:sgln:0614141.0077.0", "12 digits together"),
            ("urn:epc:id:sgln:06141.0077777.0", "6 to 12"),
            ("urn:epc:id:sgln:0614141.00777", "three parts"),
            ("urn:epc:id:sgln:0614141.00777.", "1 to 20"),
            ("urn:epc:id:sgln:0614141.00777.a b", "encodable"),
            ("urn:epc:id:sgln:0614141.00777.%2", "hex digits"),
        ] {
            let e = Sgln::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn location_base_is_an_http_uri_without_trailing_slash() {
        let b = LocationBase::parse("https://id.example.invalid/aeogate/").expect("base");
        assert_eq!(b.as_str(), "https://id.example.invalid/aeogate");
        assert!(LocationBase::parse("ftp://x").is_err());
        assert!(LocationBase::parse("https://").is_err());
        assert!(LocationBase::parse("https://x/a b").is_err());
        assert!(LocationBase::parse("https://x/a?q=1").is_err());
    }

    #[test]
    fn zone_offsets_are_written_as_epcis_wants_them() {
        let t: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        assert_eq!(Zone::default().offset_at(t), "+00:00");
        assert_eq!(Zone::parse("-05:00").expect("zone").offset_at(t), "-05:00");
        assert_eq!(Zone::parse("+05:30").expect("zone").offset_at(t), "+05:30");
        assert_eq!(Zone::parse("+14:00").expect("zone").offset_at(t), "+14:00");
        assert!(Zone::parse("-14:00").is_err());
        assert!(Zone::parse("+14:01").is_err());
        assert!(Zone::parse("+5").is_err());
        assert!(Zone::parse("+5:00").is_err());
        assert!(Zone::parse("+05:60").is_err());
        assert!(Zone::parse("-13:59").is_ok());
        assert!(Zone::parse("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn lanes_without_sgln_get_uris_under_the_base() {
        let mut cfg = ExportConfig::default();
        let g = GateId::parse("P1-G1").expect("gate");
        let l1 = LaneId::parse("L1").expect("lane");
        let l2 = LaneId::parse("L2").expect("lane");
        assert_eq!(
            cfg.read_point(&g, &l1),
            "https://id.example.invalid/aeogate/gate/P1-G1/lane/L1"
        );
        assert_eq!(
            cfg.biz_location(&g),
            "https://id.example.invalid/aeogate/gate/P1-G1"
        );
        let mut loc = GateLocations::default();
        loc.read_points.insert(
            l1.clone(),
            Sgln::parse("urn:epc:id:sgln:0614141.00777.GATE3").expect("sgln"),
        );
        cfg.gates.insert(g.clone(), loc);
        assert_eq!(
            cfg.read_point(&g, &l1),
            "urn:epc:id:sgln:0614141.00777.GATE3"
        );
        assert_eq!(
            cfg.read_point(&g, &l2),
            "https://id.example.invalid/aeogate/gate/P1-G1/lane/L2"
        );
    }

    #[test]
    fn export_config_reads_from_toml_and_refuses_a_bad_sgln() {
        let text = "location_base = \"https://gates.example.invalid/x\"\ntime_zone = \"-05:00\"\n[gates.P1-G1]\nbiz_location = \"urn:epc:id:sgln:0614141.00777.0\"\nread_points = { L1 = \"urn:epc:id:sgln:0614141.00777.GATE3\" }\n";
        let cfg: ExportConfig = toml::from_str(text).expect("config");
        let g = GateId::parse("P1-G1").expect("gate");
        assert_eq!(cfg.biz_location(&g), "urn:epc:id:sgln:0614141.00777.0");
        assert_eq!(cfg.zone(&g).name(), "-05:00");
        let bad = text.replace("00777.0\"", "0077.0\"");
        let e = toml::from_str::<ExportConfig>(&bad).expect_err("bad sgln");
        assert!(e.to_string().contains("12 digits"), "{e}");
    }
}
