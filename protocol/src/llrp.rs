//! LLRP, the GS1/EPCglobal Low Level Reader Protocol (version 1.1, which includes 1.0.1),
//! spoken by fixed UHF readers on TCP port 5084: the message codec, sans-IO.
//!
//! Only the part of the protocol a gate needs is typed: version negotiation, reader
//! capabilities (antenna count, transmit power table), reader configuration (event
//! notifications, keepalive), the ROSpec life cycle, tag reports, keepalives, reader event
//! notifications and status responses. Every other message decodes as
//! [`Message::Other`] with its body kept; every other parameter inside a typed message is
//! skipped by its TLV length (custom and vendor parameters included), so a reader that
//! sends more than we ask for is still understood.
//!
//! # Wire format (LLRP 1.1 §15.1, §16.1)
//!
//! ```text
//! message   | rsvd:3 | ver:3 | type:10 | length:32 | id:32 | parameters… |
//!             length counts the whole message, header (10 bytes) included
//! TLV param | rsvd:6 | type:10 | length:16 | fields… | sub-parameters… |
//!             length counts the whole parameter, header (4 bytes) included
//! TV param  | 1 | type:7 | value (length fixed by the type, §16.2.7 table) |
//! ```
//!
//! All integers are big-endian. `ver` is 1 for LLRP 1.0.1 and 2 for LLRP 1.1.
//!
//! # Check, then parse
//!
//! [`check`] answers "is a whole message buffered?" from the header alone; incomplete input
//! is an expected answer ([`Check::Incomplete`] with the bytes still missing), not an
//! error. A declared length over the caller's limit, under the header size, or an unknown
//! version is an error: LLRP has no resynchronisation marker, so the connection must be
//! closed. [`decode`] then parses one whole message, bounds-checking every field and
//! parameter against the length that encloses it.

use alloc::string::String;
use alloc::vec::Vec;

/// The IANA-assigned TCP port of LLRP (§18.1).
pub const PORT: u16 = 5084;
/// Bytes in a message header.
pub const HEADER_LEN: usize = 10;
/// Default limit on one message: a large report buffer flushed at once still fits, a
/// hostile length does not make the client allocate.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;
/// Longest EPC accepted: a Gen2 tag's EPC is at most 31 words (496 bits; Gen2 §6.3.2.1.2.2).
pub const MAX_EPC_BITS: usize = 496;
/// Rows of the transmit power table kept from a capabilities answer.
pub const MAX_POWER_LEVELS: usize = 1024;
/// Protocol version 1.0.1 in the header's `ver` field.
pub const VERSION_1_0_1: u8 = 1;
/// Protocol version 1.1 in the header's `ver` field.
pub const VERSION_1_1: u8 = 2;

/// Message types (§17.1, table of message types).
pub mod msg {
    pub const GET_READER_CAPABILITIES: u16 = 1;
    pub const GET_READER_CONFIG: u16 = 2;
    pub const SET_READER_CONFIG: u16 = 3;
    pub const CLOSE_CONNECTION_RESPONSE: u16 = 4;
    pub const GET_READER_CAPABILITIES_RESPONSE: u16 = 11;
    pub const GET_READER_CONFIG_RESPONSE: u16 = 12;
    pub const SET_READER_CONFIG_RESPONSE: u16 = 13;
    pub const CLOSE_CONNECTION: u16 = 14;
    pub const ADD_ROSPEC: u16 = 20;
    pub const DELETE_ROSPEC: u16 = 21;
    pub const START_ROSPEC: u16 = 22;
    pub const STOP_ROSPEC: u16 = 23;
    pub const ENABLE_ROSPEC: u16 = 24;
    pub const DISABLE_ROSPEC: u16 = 25;
    pub const GET_ROSPECS: u16 = 26;
    pub const ADD_ROSPEC_RESPONSE: u16 = 30;
    pub const DELETE_ROSPEC_RESPONSE: u16 = 31;
    pub const START_ROSPEC_RESPONSE: u16 = 32;
    pub const STOP_ROSPEC_RESPONSE: u16 = 33;
    pub const ENABLE_ROSPEC_RESPONSE: u16 = 34;
    pub const DISABLE_ROSPEC_RESPONSE: u16 = 35;
    pub const DELETE_ACCESSSPEC: u16 = 41;
    pub const DELETE_ACCESSSPEC_RESPONSE: u16 = 51;
    pub const GET_SUPPORTED_VERSION: u16 = 46;
    pub const SET_PROTOCOL_VERSION: u16 = 47;
    pub const GET_SUPPORTED_VERSION_RESPONSE: u16 = 56;
    pub const SET_PROTOCOL_VERSION_RESPONSE: u16 = 57;
    pub const GET_REPORT: u16 = 60;
    pub const RO_ACCESS_REPORT: u16 = 61;
    pub const KEEPALIVE: u16 = 62;
    pub const READER_EVENT_NOTIFICATION: u16 = 63;
    pub const ENABLE_EVENTS_AND_REPORTS: u16 = 64;
    pub const KEEPALIVE_ACK: u16 = 72;
    pub const ERROR_MESSAGE: u16 = 100;
    pub const CUSTOM_MESSAGE: u16 = 1023;
}

/// Parameter types (§16.2, table of parameter types).
pub mod param {
    // TV parameters (type 1..=127).
    pub const ANTENNA_ID: u16 = 1;
    pub const FIRST_SEEN_UTC: u16 = 2;
    pub const FIRST_SEEN_UPTIME: u16 = 3;
    pub const LAST_SEEN_UTC: u16 = 4;
    pub const LAST_SEEN_UPTIME: u16 = 5;
    pub const PEAK_RSSI: u16 = 6;
    pub const CHANNEL_INDEX: u16 = 7;
    pub const TAG_SEEN_COUNT: u16 = 8;
    pub const ROSPEC_ID: u16 = 9;
    pub const INVENTORY_PARAMETER_SPEC_ID: u16 = 10;
    pub const C1G2_CRC: u16 = 11;
    pub const C1G2_PC: u16 = 12;
    pub const EPC_96: u16 = 13;
    pub const SPEC_INDEX: u16 = 14;
    pub const ACCESS_SPEC_ID: u16 = 16;
    // TLV parameters (type 128..=1023).
    pub const UTC_TIMESTAMP: u16 = 128;
    pub const UPTIME: u16 = 129;
    pub const GENERAL_DEVICE_CAPABILITIES: u16 = 137;
    pub const RECEIVE_SENSITIVITY_TABLE_ENTRY: u16 = 139;
    pub const PER_ANTENNA_AIR_PROTOCOL: u16 = 140;
    pub const GPIO_CAPABILITIES: u16 = 141;
    pub const LLRP_CAPABILITIES: u16 = 142;
    pub const REGULATORY_CAPABILITIES: u16 = 143;
    pub const UHF_BAND_CAPABILITIES: u16 = 144;
    pub const TRANSMIT_POWER_LEVEL_TABLE_ENTRY: u16 = 145;
    pub const FREQUENCY_INFORMATION: u16 = 146;
    pub const FREQUENCY_HOP_TABLE: u16 = 147;
    pub const ROSPEC: u16 = 177;
    pub const RO_BOUNDARY_SPEC: u16 = 178;
    pub const ROSPEC_START_TRIGGER: u16 = 179;
    pub const PERIODIC_TRIGGER_VALUE: u16 = 180;
    pub const ROSPEC_STOP_TRIGGER: u16 = 182;
    pub const AI_SPEC: u16 = 183;
    pub const AI_SPEC_STOP_TRIGGER: u16 = 184;
    pub const INVENTORY_PARAMETER_SPEC: u16 = 186;
    pub const KEEPALIVE_SPEC: u16 = 220;
    pub const ANTENNA_PROPERTIES: u16 = 221;
    pub const ANTENNA_CONFIGURATION: u16 = 222;
    pub const RF_RECEIVER: u16 = 223;
    pub const RF_TRANSMITTER: u16 = 224;
    pub const EVENTS_AND_REPORTS: u16 = 226;
    pub const RO_REPORT_SPEC: u16 = 237;
    pub const TAG_REPORT_CONTENT_SELECTOR: u16 = 238;
    pub const TAG_REPORT_DATA: u16 = 240;
    pub const EPC_DATA: u16 = 241;
    pub const READER_EVENT_NOTIFICATION_SPEC: u16 = 244;
    pub const EVENT_NOTIFICATION_STATE: u16 = 245;
    pub const READER_EVENT_NOTIFICATION_DATA: u16 = 246;
    pub const ROSPEC_EVENT: u16 = 249;
    pub const READER_EXCEPTION_EVENT: u16 = 252;
    pub const ANTENNA_EVENT: u16 = 255;
    pub const CONNECTION_ATTEMPT_EVENT: u16 = 256;
    pub const CONNECTION_CLOSE_EVENT: u16 = 257;
    pub const LLRP_STATUS: u16 = 287;
    pub const C1G2_LLRP_CAPABILITIES: u16 = 327;
    pub const UHF_C1G2_RF_MODE_TABLE: u16 = 328;
    pub const UHF_C1G2_RF_MODE_TABLE_ENTRY: u16 = 329;
    pub const CUSTOM: u16 = 1023;
}

/// Status codes of the LLRPStatus parameter (§16.2.8.1, §14.2.2).
pub mod status {
    pub const M_SUCCESS: u16 = 0;
    pub const M_PARAMETER_ERROR: u16 = 100;
    pub const M_FIELD_ERROR: u16 = 101;
    pub const M_UNSUPPORTED_MESSAGE: u16 = 109;
    pub const M_UNSUPPORTED_VERSION: u16 = 110;
    pub const M_UNEXPECTED_MESSAGE: u16 = 112;
    pub const A_INVALID: u16 = 300;
    pub const R_DEVICE_ERROR: u16 = 401;
}

/// Reader event types of `EventNotificationState` (§16.2.7.7, table of event types).
pub mod event {
    pub const HOPPING: u16 = 0;
    pub const GPI: u16 = 1;
    pub const ROSPEC: u16 = 2;
    pub const REPORT_BUFFER_FILL_WARNING: u16 = 3;
    pub const READER_EXCEPTION: u16 = 4;
    pub const RF_SURVEY: u16 = 5;
    pub const AI_SPEC: u16 = 6;
    pub const AI_SPEC_WITH_SINGULATION: u16 = 7;
    pub const ANTENNA: u16 = 8;
}

/// Air protocol identifier of EPCglobal Class-1 Gen-2 (§16.2.1.1.2.1).
pub const PROTOCOL_C1G2: u8 = 1;

/// Why bytes are not an LLRP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlrpError {
    /// The header's version is neither 1 (1.0.1) nor 2 (1.1).
    #[error("protocol version {found} in the message header (1 and 2 are defined)")]
    BadVersion {
        /// The `ver` field.
        found: u8,
    },
    /// The declared message length is smaller than the header.
    #[error("declared message length {declared} is shorter than the 10-byte header")]
    Undersize {
        /// Length in the header.
        declared: u32,
    },
    /// The declared message length exceeds the caller's limit.
    #[error("declared message length {declared} exceeds the limit of {limit}")]
    Oversize {
        /// Length in the header.
        declared: u64,
        /// Largest accepted.
        limit: usize,
    },
    /// A field or parameter runs past the end of what encloses it.
    #[error("{what} needs {needed} bytes, {available} remain")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the enclosing message or parameter.
        available: usize,
    },
    /// A TLV parameter's length is under its 4-byte header.
    #[error("parameter type {kind} declares length {declared} (at least 4)")]
    BadParameterLength {
        /// Parameter type.
        kind: u16,
        /// Declared length.
        declared: u16,
    },
    /// A TV parameter of a type whose length this codec does not know: the rest of the
    /// enclosing parameter cannot be delimited.
    #[error("unknown TV parameter type {kind}")]
    UnknownTv {
        /// Parameter type (7 bits).
        kind: u8,
    },
    /// A parameter the message requires is absent.
    #[error("{within} lacks its {what}")]
    Missing {
        /// The missing parameter.
        what: &'static str,
        /// The message or parameter that requires it.
        within: &'static str,
    },
    /// A field holds a value the protocol does not define (or this codec cannot hold).
    #[error("{field} holds undefined value {value}")]
    BadValue {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
    },
    /// Text that is not UTF-8.
    #[error("{field} is not UTF-8")]
    Utf8 {
        /// Field name.
        field: &'static str,
    },
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 (LLRP 1.0.1) or 2 (LLRP 1.1).
    pub version: u8,
    /// Message type ([`msg`]).
    pub kind: u16,
    /// Whole message length in bytes.
    pub length: u32,
    /// Message id; a response carries the id of its request.
    pub id: u32,
}

/// Answer of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// At least `needed` more bytes are needed before a message is whole.
    Incomplete {
        /// Bytes still missing (for the header, or for the declared length).
        needed: usize,
    },
    /// `buf[..len]` is one whole message.
    Complete {
        /// Its length.
        len: usize,
    },
}

/// Is a whole message at the start of `buf`? Errors when the header cannot start a valid
/// message of at most `limit` bytes.
pub fn check(buf: &[u8], limit: usize) -> Result<Check, LlrpError> {
    if buf.len() < HEADER_LEN {
        return Ok(Check::Incomplete {
            needed: HEADER_LEN - buf.len(),
        });
    }
    let header = parse_header(buf)?;
    let len = header.length as usize;
    if u64::from(header.length) > limit as u64 {
        return Err(LlrpError::Oversize {
            declared: u64::from(header.length),
            limit,
        });
    }
    if buf.len() < len {
        return Ok(Check::Incomplete {
            needed: len - buf.len(),
        });
    }
    Ok(Check::Complete { len })
}

fn parse_header(buf: &[u8]) -> Result<Header, LlrpError> {
    let mut c = Cur::new(buf, "message header");
    let first = c.u16()?;
    let version = ((first >> 10) & 0x7) as u8;
    if version != VERSION_1_0_1 && version != VERSION_1_1 {
        return Err(LlrpError::BadVersion { found: version });
    }
    let length = c.u32()?;
    if (length as usize) < HEADER_LEN {
        return Err(LlrpError::Undersize { declared: length });
    }
    Ok(Header {
        version,
        kind: first & 0x3FF,
        length,
        id: c.u32()?,
    })
}

/// An LLRPStatus parameter: a status code and the reader's words for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// [`status`] code; 0 is success.
    pub code: u16,
    /// The reader's description (empty on success).
    pub description: String,
}

impl Status {
    /// Success with no description.
    #[must_use]
    pub fn success() -> Self {
        Self::default()
    }

    /// A failure with its code and description.
    #[must_use]
    pub fn error(code: u16, description: &str) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// Whether the code is `M_Success`.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.code == status::M_SUCCESS
    }
}

/// One row of the reader's transmit power table (§16.2.3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerLevel {
    /// Index used in RFTransmitter.
    pub index: u16,
    /// Power in hundredths of a dBm.
    pub dbm_x100: i16,
}

/// What a GET_READER_CAPABILITIES_RESPONSE says (the part a gate uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// MaxNumberOfAntennaSupported (GeneralDeviceCapabilities).
    pub max_antennas: Option<u16>,
    /// IANA private enterprise number of the maker.
    pub manufacturer: Option<u32>,
    /// The maker's model number.
    pub model: Option<u32>,
    /// Firmware version text.
    pub firmware: Option<String>,
    /// The transmit power table (UHFBandCapabilities), in table order.
    pub power_levels: Vec<PowerLevel>,
}

impl Capabilities {
    /// The table row with the highest power not above `dbm_x100`, or the lowest row when
    /// all are above it; `None` for an empty table.
    #[must_use]
    pub fn power_index_for(&self, dbm_x100: i16) -> Option<u16> {
        self.power_levels
            .iter()
            .filter(|p| p.dbm_x100 <= dbm_x100)
            .max_by_key(|p| p.dbm_x100)
            .or_else(|| self.power_levels.iter().min_by_key(|p| p.dbm_x100))
            .map(|p| p.index)
    }

    /// The row with the highest power.
    #[must_use]
    pub fn max_power(&self) -> Option<PowerLevel> {
        self.power_levels.iter().copied().max_by_key(|p| p.dbm_x100)
    }
}

/// AntennaProperties (§16.2.6.5): whether an antenna's cable is connected, and its gain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AntennaState {
    pub antenna: u16,
    pub connected: bool,
    /// Gain in hundredths of a dBi.
    pub gain: i16,
}

/// `RequestedData` of GET_READER_CONFIG asking for the antennas' properties (§17.1.7).
pub const REQUESTED_ANTENNA_PROPERTIES: u8 = 2;

/// Settings of one antenna (AntennaConfiguration, §16.2.6.6): the transmitter only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AntennaConfig {
    /// Antenna id; 0 means every antenna.
    pub antenna: u16,
    /// RFTransmitter: power table index, hop table id and channel index.
    pub transmitter: Option<Transmitter>,
}

/// RFTransmitter (§16.2.6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmitter {
    pub hop_table_id: u16,
    pub channel_index: u16,
    /// Index into the transmit power table.
    pub power_index: u16,
}

/// Which optional fields tag reports carry (TagReportContentSelector, §16.2.7.1), as its
/// 16-bit field: bit 15 ROSpecID, 14 SpecIndex, 13 InventoryParameterSpecID, 12 AntennaID,
/// 11 ChannelIndex, 10 PeakRSSI, 9 FirstSeenTimestamp, 8 LastSeenTimestamp, 7 TagSeenCount,
/// 6 AccessSpecID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentSelector(pub u16);

impl ContentSelector {
    pub const ROSPEC_ID: u16 = 1 << 15;
    pub const ANTENNA_ID: u16 = 1 << 12;
    pub const CHANNEL_INDEX: u16 = 1 << 11;
    pub const PEAK_RSSI: u16 = 1 << 10;
    pub const FIRST_SEEN: u16 = 1 << 9;
    pub const LAST_SEEN: u16 = 1 << 8;
    pub const TAG_SEEN_COUNT: u16 = 1 << 7;

    /// What a gate asks for in each tag report: the ROSpec and antenna that read the
    /// tag, its peak RSSI, when it was first seen and how often.
    pub const GATE_READS: ContentSelector = ContentSelector(
        Self::ROSPEC_ID
            | Self::ANTENNA_ID
            | Self::PEAK_RSSI
            | Self::FIRST_SEEN
            | Self::TAG_SEEN_COUNT,
    );

    /// Whether `bit` is set.
    #[must_use]
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// ROReportSpec (§16.2.7.1): when reports are sent and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSpec {
    /// 0 none, 1 every N tags or end of AISpec, 2 every N tags or end of ROSpec.
    pub trigger: u8,
    /// N; 0 means no count limit.
    pub n: u16,
    pub content: ContentSelector,
}

/// An antenna inventory (AISpec, §16.2.4.2) with one C1G2 InventoryParameterSpec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiSpec {
    /// Antenna ids; `[0]` means every antenna.
    pub antennas: Vec<u16>,
    /// AISpecStopTrigger type: 0 null (runs until the ROSpec stops), 1 duration.
    pub stop_trigger: u8,
    /// Duration of a type-1 stop trigger, in milliseconds.
    pub stop_duration_ms: u32,
    /// InventoryParameterSpecs: id and antenna settings.
    pub inventory: Vec<InventorySpec>,
}

/// InventoryParameterSpec (§16.2.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventorySpec {
    pub id: u16,
    /// Air protocol; [`PROTOCOL_C1G2`].
    pub protocol: u8,
    pub antenna_configs: Vec<AntennaConfig>,
}

/// A reader operation (ROSpec, §16.2.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoSpec {
    /// Non-zero id.
    pub id: u32,
    pub priority: u8,
    /// 0 disabled, 1 inactive, 2 active.
    pub current_state: u8,
    /// ROSpecStartTrigger type: 0 null (START_ROSPEC), 1 immediate, 2 periodic, 3 GPI.
    pub start_trigger: u8,
    /// ROSpecStopTrigger type: 0 null (STOP_ROSPEC), 1 duration, 2 GPI with timeout.
    pub stop_trigger: u8,
    /// Duration of a type-1 stop trigger, in milliseconds.
    pub stop_duration_ms: u32,
    pub ai_specs: Vec<AiSpec>,
    pub report: Option<ReportSpec>,
}

impl RoSpec {
    /// ROSpec `id`, disabled, at priority 0, started and stopped only by START_ROSPEC and
    /// STOP_ROSPEC: one AISpec inventorying Gen2 tags (InventoryParameterSpec 1) on
    /// `antennas` with `antenna_configs` until stopped, reporting per `report`.
    #[must_use]
    pub fn gen2_inventory(
        id: u32,
        antennas: Vec<u16>,
        antenna_configs: Vec<AntennaConfig>,
        report: Option<ReportSpec>,
    ) -> Self {
        RoSpec {
            id,
            priority: 0,
            current_state: 0,
            start_trigger: 0,
            stop_trigger: 0,
            stop_duration_ms: 0,
            ai_specs: alloc::vec![AiSpec {
                antennas,
                stop_trigger: 0,
                stop_duration_ms: 0,
                inventory: alloc::vec![InventorySpec {
                    id: 1,
                    protocol: PROTOCOL_C1G2,
                    antenna_configs,
                }],
            }],
            report,
        }
    }
}

/// What SET_READER_CONFIG sets (the part a gate uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReaderConfig {
    pub reset_to_factory_default: bool,
    /// ReaderEventNotificationSpec: (event type, enabled).
    pub event_notifications: Vec<(u16, bool)>,
    /// KeepaliveSpec: `Some(0)` turns keepalives off, `Some(ms)` asks for one every `ms`.
    pub keepalive_ms: Option<u32>,
    /// EventsAndReports: hold events and reports while no client is connected.
    pub hold_events_and_reports: Option<bool>,
    pub antenna_configs: Vec<AntennaConfig>,
    pub report: Option<ReportSpec>,
}

/// One TagReportData (§16.2.7.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagReport {
    /// The EPC bank contents after the PC word (EPCData or EPC-96).
    pub epc: Vec<u8>,
    pub rospec_id: Option<u32>,
    pub antenna: Option<u16>,
    /// dBm.
    pub peak_rssi: Option<i8>,
    pub channel_index: Option<u16>,
    /// Microseconds since the Unix epoch.
    pub first_seen_utc_us: Option<u64>,
    pub last_seen_utc_us: Option<u64>,
    /// Microseconds since the reader started (readers without a clock).
    pub first_seen_uptime_us: Option<u64>,
    pub seen_count: Option<u16>,
    /// The tag's PC word (C1G2_PC).
    pub pc: Option<u16>,
}

/// One event inside a READER_EVENT_NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    /// ConnectionAttemptEvent: 0 success; 1..=4 the reader refused this connection.
    ConnectionAttempt { status: u16 },
    /// ConnectionCloseEvent: the reader is about to close the connection.
    ConnectionClose,
    /// AntennaEvent.
    Antenna { connected: bool, antenna: u16 },
    /// ROSpecEvent: 0 started, 1 ended, 2 preempted.
    RoSpec { kind: u8, rospec_id: u32 },
    /// ReaderExceptionEvent with its message.
    ReaderException { message: String },
    /// Any other event parameter, by type.
    Other { kind: u16 },
}

/// ReaderEventNotificationData (§16.2.7.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    /// Microseconds: since the Unix epoch when `utc`, else since the reader started.
    pub timestamp_us: u64,
    pub utc: bool,
    pub events: Vec<ReaderEvent>,
}

/// The ROSpec operations that carry only an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoSpecOp {
    Delete,
    Start,
    Stop,
    Enable,
    Disable,
}

impl RoSpecOp {
    /// Message type of the request.
    #[must_use]
    pub fn kind(self) -> u16 {
        match self {
            Self::Delete => msg::DELETE_ROSPEC,
            Self::Start => msg::START_ROSPEC,
            Self::Stop => msg::STOP_ROSPEC,
            Self::Enable => msg::ENABLE_ROSPEC,
            Self::Disable => msg::DISABLE_ROSPEC,
        }
    }

    /// Message type of its response.
    #[must_use]
    pub fn response_kind(self) -> u16 {
        self.kind() + 10
    }

    fn from_kind(kind: u16) -> Option<Self> {
        Some(match kind {
            msg::DELETE_ROSPEC => Self::Delete,
            msg::START_ROSPEC => Self::Start,
            msg::STOP_ROSPEC => Self::Stop,
            msg::ENABLE_ROSPEC => Self::Enable,
            msg::DISABLE_ROSPEC => Self::Disable,
            _ => return None,
        })
    }
}

/// One LLRP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    GetSupportedVersion,
    GetSupportedVersionResponse {
        current: u8,
        supported: u8,
        status: Status,
    },
    SetProtocolVersion {
        version: u8,
    },
    /// `requested`: 0 all, 1 general device, 2 LLRP, 3 regulatory, 4 air protocol.
    GetReaderCapabilities {
        requested: u8,
    },
    GetReaderCapabilitiesResponse {
        status: Status,
        capabilities: Capabilities,
    },
    /// GET_READER_CONFIG for `antenna` (0: all) and `requested` data
    /// ([`REQUESTED_ANTENNA_PROPERTIES`], …); GPI and GPO port 0.
    GetReaderConfig {
        antenna: u16,
        requested: u8,
    },
    /// GET_READER_CONFIG_RESPONSE: the status and the AntennaProperties it carries (other
    /// configuration parameters are skipped).
    GetReaderConfigResponse {
        status: Status,
        antennas: Vec<AntennaState>,
    },
    SetReaderConfig(ReaderConfig),
    AddRoSpec(RoSpec),
    /// DELETE/START/STOP/ENABLE/DISABLE_ROSPEC; id 0 means all (delete, disable).
    RoSpec {
        op: RoSpecOp,
        id: u32,
    },
    /// DELETE_ACCESSSPEC; id 0 means all.
    DeleteAccessSpec {
        id: u32,
    },
    RoAccessReport(Vec<TagReport>),
    Keepalive,
    KeepaliveAck,
    ReaderEventNotification(EventData),
    EnableEventsAndReports,
    CloseConnection,
    ErrorMessage(Status),
    /// A response whose body is one LLRPStatus: SET_READER_CONFIG, CLOSE_CONNECTION,
    /// SET_PROTOCOL_VERSION and the ROSpec and AccessSpec responses.
    Response {
        kind: u16,
        status: Status,
    },
    /// Any other message, body unparsed.
    Other {
        kind: u16,
        body: Vec<u8>,
    },
}

fn is_status_response(kind: u16) -> bool {
    matches!(
        kind,
        msg::SET_READER_CONFIG_RESPONSE
            | msg::CLOSE_CONNECTION_RESPONSE
            | msg::SET_PROTOCOL_VERSION_RESPONSE
            | 30..=35
            | 50..=53
    )
}

impl Message {
    /// Its message type.
    #[must_use]
    pub fn kind(&self) -> u16 {
        match self {
            Self::GetSupportedVersion => msg::GET_SUPPORTED_VERSION,
            Self::GetSupportedVersionResponse { .. } => msg::GET_SUPPORTED_VERSION_RESPONSE,
            Self::SetProtocolVersion { .. } => msg::SET_PROTOCOL_VERSION,
            Self::GetReaderCapabilities { .. } => msg::GET_READER_CAPABILITIES,
            Self::GetReaderCapabilitiesResponse { .. } => msg::GET_READER_CAPABILITIES_RESPONSE,
            Self::GetReaderConfig { .. } => msg::GET_READER_CONFIG,
            Self::GetReaderConfigResponse { .. } => msg::GET_READER_CONFIG_RESPONSE,
            Self::SetReaderConfig(_) => msg::SET_READER_CONFIG,
            Self::AddRoSpec(_) => msg::ADD_ROSPEC,
            Self::RoSpec { op, .. } => op.kind(),
            Self::DeleteAccessSpec { .. } => msg::DELETE_ACCESSSPEC,
            Self::RoAccessReport(_) => msg::RO_ACCESS_REPORT,
            Self::Keepalive => msg::KEEPALIVE,
            Self::KeepaliveAck => msg::KEEPALIVE_ACK,
            Self::ReaderEventNotification(_) => msg::READER_EVENT_NOTIFICATION,
            Self::EnableEventsAndReports => msg::ENABLE_EVENTS_AND_REPORTS,
            Self::CloseConnection => msg::CLOSE_CONNECTION,
            Self::ErrorMessage(_) => msg::ERROR_MESSAGE,
            Self::Response { kind, .. } | Self::Other { kind, .. } => *kind,
        }
    }

    /// Encodes the message with header version `version` and id `id`.
    #[must_use]
    pub fn encode(&self, version: u8, id: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let kind = self.kind() & 0x3FF;
        put(&mut out, (u16::from(version & 0x7) << 10) | kind);
        out.extend_from_slice(&[0; 4]);
        put(&mut out, id);
        self.encode_body(&mut out);
        let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out[2..6].copy_from_slice(&len.to_be_bytes());
        out
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::GetSupportedVersion
            | Self::Keepalive
            | Self::KeepaliveAck
            | Self::EnableEventsAndReports
            | Self::CloseConnection => {}
            Self::GetSupportedVersionResponse {
                current,
                supported,
                status,
            } => {
                out.push(*current);
                out.push(*supported);
                put_status(out, status);
            }
            Self::SetProtocolVersion { version } => out.push(*version),
            Self::GetReaderCapabilities { requested } => out.push(*requested),
            Self::GetReaderCapabilitiesResponse {
                status,
                capabilities,
            } => {
                put_status(out, status);
                put_capabilities(out, capabilities);
            }
            Self::GetReaderConfig { antenna, requested } => {
                put(out, antenna);
                out.push(*requested);
                out.extend_from_slice(&[0; 4]); // GPIPortNum, GPOPortNum
            }
            Self::GetReaderConfigResponse { status, antennas } => {
                put_status(out, status);
                for a in antennas {
                    tlv(out, param::ANTENNA_PROPERTIES, |o| {
                        o.push(if a.connected { 0x80 } else { 0 });
                        put(o, a.antenna);
                        put(o, a.gain);
                    });
                }
            }
            Self::SetReaderConfig(c) => put_reader_config(out, c),
            Self::AddRoSpec(r) => put_rospec(out, r),
            Self::RoSpec { id, .. } | Self::DeleteAccessSpec { id } => {
                put(out, id);
            }
            Self::RoAccessReport(tags) => {
                for t in tags {
                    put_tag_report(out, t);
                }
            }
            Self::ReaderEventNotification(e) => put_event_data(out, e),
            Self::ErrorMessage(s) | Self::Response { status: s, .. } => put_status(out, s),
            Self::Other { body, .. } => out.extend_from_slice(body),
        }
    }
}

/// Parses one whole message (as delimited by [`check`]): its header and body. Bytes after
/// the declared length are not looked at.
pub fn decode(buf: &[u8]) -> Result<(Header, Message), LlrpError> {
    let header = parse_header(buf)?;
    let len = header.length as usize;
    if buf.len() < len {
        return Err(LlrpError::Truncated {
            what: "message",
            needed: len,
            available: buf.len(),
        });
    }
    let mut c = Cur::new(&buf[HEADER_LEN..len], "message body");
    let message = match header.kind {
        msg::GET_SUPPORTED_VERSION => Message::GetSupportedVersion,
        msg::GET_SUPPORTED_VERSION_RESPONSE => {
            let current = c.u8()?;
            let supported = c.u8()?;
            Message::GetSupportedVersionResponse {
                current,
                supported,
                status: find_status(&mut c, "GET_SUPPORTED_VERSION_RESPONSE")?,
            }
        }
        msg::SET_PROTOCOL_VERSION => Message::SetProtocolVersion { version: c.u8()? },
        msg::GET_READER_CAPABILITIES => Message::GetReaderCapabilities { requested: c.u8()? },
        msg::GET_READER_CAPABILITIES_RESPONSE => parse_capabilities_response(&mut c)?,
        msg::GET_READER_CONFIG => {
            let antenna = c.u16()?;
            let requested = c.u8()?;
            let _gpi = c.u16()?;
            let _gpo = c.u16()?;
            Message::GetReaderConfig { antenna, requested }
        }
        msg::GET_READER_CONFIG_RESPONSE => {
            let mut status = None;
            let mut antennas = Vec::new();
            while let Some(p) = c.param()? {
                match p.kind {
                    param::LLRP_STATUS if status.is_none() => {
                        status = Some(parse_status(p.body)?);
                    }
                    param::ANTENNA_PROPERTIES => {
                        let mut a = Cur::new(p.body, "AntennaProperties");
                        let connected = a.u8()? & 0x80 != 0;
                        let antenna = a.u16()?;
                        let gain = a.u16()?.cast_signed();
                        antennas.push(AntennaState {
                            antenna,
                            connected,
                            gain,
                        });
                    }
                    _ => {}
                }
            }
            Message::GetReaderConfigResponse {
                status: status.ok_or(LlrpError::Missing {
                    what: "LLRPStatus",
                    within: "GET_READER_CONFIG_RESPONSE",
                })?,
                antennas,
            }
        }
        msg::SET_READER_CONFIG => Message::SetReaderConfig(parse_reader_config(&mut c)?),
        msg::ADD_ROSPEC => {
            let mut spec = None;
            while let Some(p) = c.param()? {
                if p.kind == param::ROSPEC && spec.is_none() {
                    spec = Some(parse_rospec(p.body)?);
                }
            }
            Message::AddRoSpec(spec.ok_or(LlrpError::Missing {
                what: "ROSpec",
                within: "ADD_ROSPEC",
            })?)
        }
        k if RoSpecOp::from_kind(k).is_some() => Message::RoSpec {
            op: RoSpecOp::from_kind(k).unwrap_or(RoSpecOp::Delete),
            id: c.u32()?,
        },
        msg::DELETE_ACCESSSPEC => Message::DeleteAccessSpec { id: c.u32()? },
        msg::RO_ACCESS_REPORT => {
            let mut tags = Vec::new();
            while let Some(p) = c.param()? {
                if p.kind == param::TAG_REPORT_DATA {
                    tags.push(parse_tag_report(p.body)?);
                }
            }
            Message::RoAccessReport(tags)
        }
        msg::KEEPALIVE => Message::Keepalive,
        msg::KEEPALIVE_ACK => Message::KeepaliveAck,
        msg::READER_EVENT_NOTIFICATION => {
            let mut data = None;
            while let Some(p) = c.param()? {
                if p.kind == param::READER_EVENT_NOTIFICATION_DATA && data.is_none() {
                    data = Some(parse_event_data(p.body)?);
                }
            }
            Message::ReaderEventNotification(data.ok_or(LlrpError::Missing {
                what: "ReaderEventNotificationData",
                within: "READER_EVENT_NOTIFICATION",
            })?)
        }
        msg::ENABLE_EVENTS_AND_REPORTS => Message::EnableEventsAndReports,
        msg::CLOSE_CONNECTION => Message::CloseConnection,
        msg::ERROR_MESSAGE => Message::ErrorMessage(find_status(&mut c, "ERROR_MESSAGE")?),
        k if is_status_response(k) => Message::Response {
            kind: k,
            status: find_status(&mut c, "response")?,
        },
        k => Message::Other {
            kind: k,
            body: c.rest().to_vec(),
        },
    };
    Ok((header, message))
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// A bounds-checked big-endian cursor over one message body or parameter.
struct Cur<'a> {
    b: &'a [u8],
    what: &'static str,
}

/// One parameter: its type and the bytes after its header (TLV) or type byte (TV).
struct Param<'a> {
    kind: u16,
    body: &'a [u8],
}

/// Value length of each TV parameter type (§16.2.7.3 and the C1G2 TV parameters).
fn tv_len(kind: u8) -> Option<usize> {
    Some(match kind {
        1 | 7 | 8 | 10..=12 | 14 | 15 | 17 | 19 | 20 => 2,
        6 => 1,
        2..=5 => 8,
        9 | 16 | 18 => 4,
        13 => 12,
        _ => return None,
    })
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Self {
        Self { b, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LlrpError> {
        if self.b.len() < n {
            return Err(LlrpError::Truncated {
                what: self.what,
                needed: n,
                available: self.b.len(),
            });
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LlrpError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, LlrpError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, LlrpError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, LlrpError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, LlrpError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn utf8(&mut self, field: &'static str) -> Result<String, LlrpError> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(n)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| LlrpError::Utf8 { field })
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.b)
    }

    /// The next parameter, or `None` at the end.
    fn param(&mut self) -> Result<Option<Param<'a>>, LlrpError> {
        let Some(&first) = self.b.first() else {
            return Ok(None);
        };
        if first & 0x80 != 0 {
            let kind = first & 0x7F;
            let n = tv_len(kind).ok_or(LlrpError::UnknownTv { kind })?;
            let all = self.take(1 + n)?;
            return Ok(Some(Param {
                kind: u16::from(kind),
                body: &all[1..],
            }));
        }
        let head = self.u16()?;
        let kind = head & 0x3FF;
        let declared = self.u16()?;
        if declared < 4 {
            return Err(LlrpError::BadParameterLength { kind, declared });
        }
        let body = self.take(usize::from(declared) - 4)?;
        Ok(Some(Param { kind, body }))
    }
}

/// An LLRPStatus parameter's body: the status code and the error description.
fn parse_status(body: &[u8]) -> Result<Status, LlrpError> {
    let mut s = Cur::new(body, "LLRPStatus");
    let code = s.u16()?;
    let description = s.utf8("LLRPStatus.ErrorDescription")?;
    Ok(Status { code, description })
}

fn find_status(c: &mut Cur<'_>, within: &'static str) -> Result<Status, LlrpError> {
    while let Some(p) = c.param()? {
        if p.kind == param::LLRP_STATUS {
            return parse_status(p.body);
        }
    }
    Err(LlrpError::Missing {
        what: "LLRPStatus",
        within,
    })
}

fn parse_capabilities_response(c: &mut Cur<'_>) -> Result<Message, LlrpError> {
    let mut status = None;
    let mut caps = Capabilities::default();
    while let Some(p) = c.param()? {
        match p.kind {
            param::LLRP_STATUS if status.is_none() => status = Some(parse_status(p.body)?),
            param::GENERAL_DEVICE_CAPABILITIES => {
                let mut g = Cur::new(p.body, "GeneralDeviceCapabilities");
                caps.max_antennas = Some(g.u16()?);
                let _flags = g.u16()?;
                caps.manufacturer = Some(g.u32()?);
                caps.model = Some(g.u32()?);
                caps.firmware = Some(g.utf8("ReaderFirmwareVersion")?);
            }
            param::REGULATORY_CAPABILITIES => {
                let mut r = Cur::new(p.body, "RegulatoryCapabilities");
                let _country = r.u16()?;
                let _standard = r.u16()?;
                while let Some(band) = r.param()? {
                    if band.kind != param::UHF_BAND_CAPABILITIES {
                        continue;
                    }
                    let mut b = Cur::new(band.body, "UHFBandCapabilities");
                    while let Some(e) = b.param()? {
                        // A real table has tens of rows; the cap keeps a re-encoded
                        // answer within one parameter's 16-bit length.
                        if e.kind == param::TRANSMIT_POWER_LEVEL_TABLE_ENTRY
                            && caps.power_levels.len() < MAX_POWER_LEVELS
                        {
                            let mut t = Cur::new(e.body, "TransmitPowerLevelTableEntry");
                            let index = t.u16()?;
                            let dbm_x100 = t.u16()?.cast_signed();
                            caps.power_levels.push(PowerLevel { index, dbm_x100 });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Message::GetReaderCapabilitiesResponse {
        status: status.ok_or(LlrpError::Missing {
            what: "LLRPStatus",
            within: "GET_READER_CAPABILITIES_RESPONSE",
        })?,
        capabilities: caps,
    })
}

fn parse_antenna_config(body: &[u8]) -> Result<AntennaConfig, LlrpError> {
    let mut c = Cur::new(body, "AntennaConfiguration");
    let antenna = c.u16()?;
    let mut transmitter = None;
    while let Some(p) = c.param()? {
        if p.kind == param::RF_TRANSMITTER {
            let mut t = Cur::new(p.body, "RFTransmitter");
            transmitter = Some(Transmitter {
                hop_table_id: t.u16()?,
                channel_index: t.u16()?,
                power_index: t.u16()?,
            });
        }
    }
    Ok(AntennaConfig {
        antenna,
        transmitter,
    })
}

fn parse_report_spec(body: &[u8]) -> Result<ReportSpec, LlrpError> {
    let mut c = Cur::new(body, "ROReportSpec");
    let trigger = c.u8()?;
    let n = c.u16()?;
    let mut content = ContentSelector::default();
    while let Some(p) = c.param()? {
        if p.kind == param::TAG_REPORT_CONTENT_SELECTOR {
            content = ContentSelector(Cur::new(p.body, "TagReportContentSelector").u16()?);
        }
    }
    Ok(ReportSpec {
        trigger,
        n,
        content,
    })
}

fn parse_reader_config(c: &mut Cur<'_>) -> Result<ReaderConfig, LlrpError> {
    let mut cfg = ReaderConfig {
        reset_to_factory_default: c.u8()? & 0x80 != 0,
        ..ReaderConfig::default()
    };
    while let Some(p) = c.param()? {
        match p.kind {
            param::READER_EVENT_NOTIFICATION_SPEC => {
                let mut s = Cur::new(p.body, "ReaderEventNotificationSpec");
                while let Some(e) = s.param()? {
                    if e.kind == param::EVENT_NOTIFICATION_STATE {
                        let mut v = Cur::new(e.body, "EventNotificationState");
                        let kind = v.u16()?;
                        let on = v.u8()? & 0x80 != 0;
                        cfg.event_notifications.push((kind, on));
                    }
                }
            }
            param::KEEPALIVE_SPEC => {
                let mut k = Cur::new(p.body, "KeepaliveSpec");
                let kind = k.u8()?;
                let period = k.u32()?;
                cfg.keepalive_ms = Some(if kind == 1 { period } else { 0 });
            }
            param::EVENTS_AND_REPORTS => {
                let hold = Cur::new(p.body, "EventsAndReports").u8()? & 0x80 != 0;
                cfg.hold_events_and_reports = Some(hold);
            }
            param::ANTENNA_CONFIGURATION => cfg.antenna_configs.push(parse_antenna_config(p.body)?),
            param::RO_REPORT_SPEC => cfg.report = Some(parse_report_spec(p.body)?),
            _ => {}
        }
    }
    Ok(cfg)
}

fn parse_rospec(body: &[u8]) -> Result<RoSpec, LlrpError> {
    let mut c = Cur::new(body, "ROSpec");
    let id = c.u32()?;
    let priority = c.u8()?;
    let current_state = c.u8()?;
    if current_state > 2 {
        return Err(LlrpError::BadValue {
            field: "ROSpec.CurrentState",
            value: u64::from(current_state),
        });
    }
    let mut spec = RoSpec {
        id,
        priority,
        current_state,
        start_trigger: 0,
        stop_trigger: 0,
        stop_duration_ms: 0,
        ai_specs: Vec::new(),
        report: None,
    };
    let mut boundary = false;
    while let Some(p) = c.param()? {
        match p.kind {
            param::RO_BOUNDARY_SPEC => {
                boundary = true;
                let mut b = Cur::new(p.body, "ROBoundarySpec");
                while let Some(t) = b.param()? {
                    match t.kind {
                        param::ROSPEC_START_TRIGGER => {
                            spec.start_trigger = Cur::new(t.body, "ROSpecStartTrigger").u8()?;
                        }
                        param::ROSPEC_STOP_TRIGGER => {
                            (spec.stop_trigger, spec.stop_duration_ms) =
                                parse_stop_trigger(t.body, "ROSpecStopTrigger")?;
                        }
                        _ => {}
                    }
                }
            }
            param::AI_SPEC => spec.ai_specs.push(parse_ai_spec(p.body)?),
            param::RO_REPORT_SPEC => spec.report = Some(parse_report_spec(p.body)?),
            _ => {}
        }
    }
    if !boundary {
        return Err(LlrpError::Missing {
            what: "ROBoundarySpec",
            within: "ROSpec",
        });
    }
    Ok(spec)
}

/// A ROSpecStopTrigger or AISpecStopTrigger body: the trigger type and its duration (ms);
/// a GPI trigger's parameters after them are not kept.
fn parse_stop_trigger(body: &[u8], what: &'static str) -> Result<(u8, u32), LlrpError> {
    let mut s = Cur::new(body, what);
    Ok((s.u8()?, s.u32()?))
}

fn parse_ai_spec(body: &[u8]) -> Result<AiSpec, LlrpError> {
    let mut c = Cur::new(body, "AISpec");
    let count = usize::from(c.u16()?);
    // Each id is two bytes: bound the allocation by what the parameter can hold.
    if count * 2 > c.b.len() {
        return Err(LlrpError::Truncated {
            what: "AISpec.AntennaIDs",
            needed: count * 2,
            available: c.b.len(),
        });
    }
    let mut antennas = Vec::with_capacity(count);
    for _ in 0..count {
        antennas.push(c.u16()?);
    }
    let mut spec = AiSpec {
        antennas,
        stop_trigger: 0,
        stop_duration_ms: 0,
        inventory: Vec::new(),
    };
    while let Some(p) = c.param()? {
        match p.kind {
            param::AI_SPEC_STOP_TRIGGER => {
                (spec.stop_trigger, spec.stop_duration_ms) =
                    parse_stop_trigger(p.body, "AISpecStopTrigger")?;
            }
            param::INVENTORY_PARAMETER_SPEC => {
                let mut s = Cur::new(p.body, "InventoryParameterSpec");
                let mut inv = InventorySpec {
                    id: s.u16()?,
                    protocol: s.u8()?,
                    antenna_configs: Vec::new(),
                };
                while let Some(a) = s.param()? {
                    if a.kind == param::ANTENNA_CONFIGURATION {
                        inv.antenna_configs.push(parse_antenna_config(a.body)?);
                    }
                }
                spec.inventory.push(inv);
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn parse_tag_report(body: &[u8]) -> Result<TagReport, LlrpError> {
    let mut c = Cur::new(body, "TagReportData");
    let mut t = TagReport::default();
    let mut has_epc = false;
    while let Some(p) = c.param()? {
        let mut v = Cur::new(p.body, "TagReportData field");
        match p.kind {
            param::EPC_DATA => {
                let bits = usize::from(v.u16()?);
                if bits > MAX_EPC_BITS {
                    return Err(LlrpError::BadValue {
                        field: "EPCData.EPCLengthBits",
                        value: bits as u64,
                    });
                }
                t.epc = v.take(bits.div_ceil(8))?.to_vec();
                has_epc = true;
            }
            param::EPC_96 => {
                t.epc = v.take(12)?.to_vec();
                has_epc = true;
            }
            param::ROSPEC_ID => t.rospec_id = Some(v.u32()?),
            param::ANTENNA_ID => t.antenna = Some(v.u16()?),
            param::PEAK_RSSI => t.peak_rssi = Some(v.u8()?.cast_signed()),
            param::CHANNEL_INDEX => t.channel_index = Some(v.u16()?),
            param::FIRST_SEEN_UTC => t.first_seen_utc_us = Some(v.u64()?),
            param::FIRST_SEEN_UPTIME => t.first_seen_uptime_us = Some(v.u64()?),
            param::LAST_SEEN_UTC => t.last_seen_utc_us = Some(v.u64()?),
            param::TAG_SEEN_COUNT => t.seen_count = Some(v.u16()?),
            param::C1G2_PC => t.pc = Some(v.u16()?),
            _ => {}
        }
    }
    if !has_epc {
        return Err(LlrpError::Missing {
            what: "EPCData or EPC-96",
            within: "TagReportData",
        });
    }
    Ok(t)
}

fn parse_event_data(body: &[u8]) -> Result<EventData, LlrpError> {
    let mut c = Cur::new(body, "ReaderEventNotificationData");
    let mut stamp = None;
    let mut events = Vec::new();
    while let Some(p) = c.param()? {
        let mut v = Cur::new(p.body, "reader event");
        match p.kind {
            param::UTC_TIMESTAMP if stamp.is_none() => stamp = Some((v.u64()?, true)),
            param::UPTIME if stamp.is_none() => stamp = Some((v.u64()?, false)),
            param::CONNECTION_ATTEMPT_EVENT => {
                events.push(ReaderEvent::ConnectionAttempt { status: v.u16()? })
            }
            param::CONNECTION_CLOSE_EVENT => events.push(ReaderEvent::ConnectionClose),
            param::ANTENNA_EVENT => {
                let kind = v.u8()?;
                if kind > 1 {
                    return Err(LlrpError::BadValue {
                        field: "AntennaEvent.EventType",
                        value: u64::from(kind),
                    });
                }
                events.push(ReaderEvent::Antenna {
                    connected: kind == 1,
                    antenna: v.u16()?,
                });
            }
            param::ROSPEC_EVENT => {
                let kind = v.u8()?;
                events.push(ReaderEvent::RoSpec {
                    kind,
                    rospec_id: v.u32()?,
                });
            }
            param::READER_EXCEPTION_EVENT => events.push(ReaderEvent::ReaderException {
                message: v.utf8("ReaderExceptionEvent.Message")?,
            }),
            k => events.push(ReaderEvent::Other { kind: k }),
        }
    }
    let (timestamp_us, utc) = stamp.ok_or(LlrpError::Missing {
        what: "UTCTimestamp or Uptime",
        within: "ReaderEventNotificationData",
    })?;
    Ok(EventData {
        timestamp_us,
        utc,
        events,
    })
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Writes a TLV parameter: header, then whatever `body` writes, then patches the length.
fn tlv(out: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    put(out, kind & 0x3FF);
    out.extend_from_slice(&[0, 0]);
    body(out);
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A fixed-width integer field (LLRP sends every integer big-endian).
trait Field: Copy {
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! field {
    ($($t:ty),*) => {
        $(impl Field for $t {
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        })*
    };
}

field!(u8, i8, u16, i16, u32, u64);

impl<T: Field> Field for &T {
    fn put(self, out: &mut Vec<u8>) {
        (*self).put(out);
    }
}

/// Writes `value` big-endian.
fn put(out: &mut Vec<u8>, value: impl Field) {
    value.put(out);
}

/// Writes a TV parameter holding `value`, when there is one.
fn tv_some(out: &mut Vec<u8>, kind: u16, value: Option<impl Field>) {
    if let Some(v) = value {
        out.push(0x80 | (kind as u8 & 0x7F));
        v.put(out);
    }
}

fn tv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.push(0x80 | (kind as u8 & 0x7F));
    out.extend_from_slice(value);
}

fn put_utf8(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
    put(out, bytes.len() as u16);
    out.extend_from_slice(bytes);
}

fn put_status(out: &mut Vec<u8>, s: &Status) {
    tlv(out, param::LLRP_STATUS, |o| {
        put(o, s.code);
        put_utf8(o, &s.description);
    });
}

/// A capabilities answer complete enough for general-purpose clients: device, LLRP,
/// regulatory (power table, one hop table, one C1G2 RF mode) and C1G2 capabilities.
fn put_capabilities(out: &mut Vec<u8>, caps: &Capabilities) {
    let antennas = caps.max_antennas.unwrap_or(1);
    tlv(out, param::GENERAL_DEVICE_CAPABILITIES, |o| {
        put(o, antennas);
        // CanSetAntennaProperties 0, HasUTCClockCapability 1.
        put(o, 0x4000u16);
        put(o, caps.manufacturer.unwrap_or(0));
        put(o, caps.model.unwrap_or(0));
        put_utf8(o, caps.firmware.as_deref().unwrap_or(""));
        tlv(o, param::RECEIVE_SENSITIVITY_TABLE_ENTRY, |e| {
            put(e, 1u16);
            put(e, 0u16);
        });
        tlv(o, param::GPIO_CAPABILITIES, |e| {
            e.extend_from_slice(&[0; 4])
        });
        for a in 1..=antennas {
            tlv(o, param::PER_ANTENNA_AIR_PROTOCOL, |e| {
                put(e, a);
                put(e, 1u16);
                e.push(PROTOCOL_C1G2);
            });
        }
    });
    tlv(out, param::LLRP_CAPABILITIES, |o| {
        // Supports event and report holding (bit 3); priorities 0..=0; one ROSpec at a
        // time of one AISpec with one InventoryParameterSpec; no AccessSpecs.
        o.push(0x08);
        o.push(0);
        put(o, 0u16);
        for v in [1u32, 1, 1, 0, 0] {
            put(o, v);
        }
    });
    tlv(out, param::REGULATORY_CAPABILITIES, |o| {
        // ISO 3166 numeric 0 (unspecified); communications standard 0 (unspecified).
        o.extend_from_slice(&[0; 4]);
        tlv(o, param::UHF_BAND_CAPABILITIES, |b| {
            for p in &caps.power_levels {
                tlv(b, param::TRANSMIT_POWER_LEVEL_TABLE_ENTRY, |e| {
                    put(e, p.index);
                    put(e, p.dbm_x100);
                });
            }
            tlv(b, param::FREQUENCY_INFORMATION, |f| {
                f.push(0x80); // hopping
                tlv(f, param::FREQUENCY_HOP_TABLE, |h| {
                    h.push(1); // hop table id
                    h.push(0);
                    put(h, 1u16);
                    put(h, 866_900u32); // kHz
                });
            });
            tlv(b, param::UHF_C1G2_RF_MODE_TABLE, |m| {
                tlv(m, param::UHF_C1G2_RF_MODE_TABLE_ENTRY, |e| {
                    put(e, 0u32); // mode identifier
                    e.push(0x40); // EPC HAG T&C conformance
                    e.push(2); // Miller 4
                    e.push(1); // forward link modulation: DSB-ASK
                    e.push(0); // spectral mask: unknown
                    for v in [250_000u32, 1500, 12_500, 25_000, 0] {
                        put(e, v);
                    }
                });
            });
        });
    });
    tlv(out, param::C1G2_LLRP_CAPABILITIES, |o| {
        o.push(0);
        put(o, 0u16);
    });
}

fn put_antenna_config(out: &mut Vec<u8>, a: &AntennaConfig) {
    tlv(out, param::ANTENNA_CONFIGURATION, |o| {
        put(o, a.antenna);
        if let Some(t) = a.transmitter {
            tlv(o, param::RF_TRANSMITTER, |r| {
                put(r, t.hop_table_id);
                put(r, t.channel_index);
                put(r, t.power_index);
            });
        }
    });
}

fn put_report_spec(out: &mut Vec<u8>, r: &ReportSpec) {
    tlv(out, param::RO_REPORT_SPEC, |o| {
        o.push(r.trigger);
        put(o, r.n);
        tlv(o, param::TAG_REPORT_CONTENT_SELECTOR, |s| {
            put(s, r.content.0);
        });
    });
}

fn put_reader_config(out: &mut Vec<u8>, c: &ReaderConfig) {
    out.push(if c.reset_to_factory_default { 0x80 } else { 0 });
    if !c.event_notifications.is_empty() {
        tlv(out, param::READER_EVENT_NOTIFICATION_SPEC, |o| {
            for (kind, on) in &c.event_notifications {
                tlv(o, param::EVENT_NOTIFICATION_STATE, |e| {
                    put(e, kind);
                    e.push(if *on { 0x80 } else { 0 });
                });
            }
        });
    }
    for a in &c.antenna_configs {
        put_antenna_config(out, a);
    }
    if let Some(r) = &c.report {
        put_report_spec(out, r);
    }
    if let Some(ms) = c.keepalive_ms {
        tlv(out, param::KEEPALIVE_SPEC, |o| {
            o.push(u8::from(ms > 0));
            put(o, ms);
        });
    }
    if let Some(hold) = c.hold_events_and_reports {
        tlv(out, param::EVENTS_AND_REPORTS, |o| {
            o.push(if hold { 0x80 } else { 0 });
        });
    }
}

fn put_rospec(out: &mut Vec<u8>, r: &RoSpec) {
    tlv(out, param::ROSPEC, |o| {
        put(o, r.id);
        o.push(r.priority);
        o.push(r.current_state);
        tlv(o, param::RO_BOUNDARY_SPEC, |b| {
            tlv(b, param::ROSPEC_START_TRIGGER, |t| t.push(r.start_trigger));
            tlv(b, param::ROSPEC_STOP_TRIGGER, |t| {
                t.push(r.stop_trigger);
                put(t, r.stop_duration_ms);
            });
        });
        for ai in &r.ai_specs {
            tlv(o, param::AI_SPEC, |a| {
                put(a, ai.antennas.len() as u16);
                for id in &ai.antennas {
                    put(a, id);
                }
                tlv(a, param::AI_SPEC_STOP_TRIGGER, |t| {
                    t.push(ai.stop_trigger);
                    put(t, ai.stop_duration_ms);
                });
                for inv in &ai.inventory {
                    tlv(a, param::INVENTORY_PARAMETER_SPEC, |i| {
                        put(i, inv.id);
                        i.push(inv.protocol);
                        for ac in &inv.antenna_configs {
                            put_antenna_config(i, ac);
                        }
                    });
                }
            });
        }
        if let Some(rep) = &r.report {
            put_report_spec(o, rep);
        }
    });
}

fn put_tag_report(out: &mut Vec<u8>, t: &TagReport) {
    tlv(out, param::TAG_REPORT_DATA, |o| {
        if t.epc.len() == 12 {
            tv(o, param::EPC_96, &t.epc);
        } else {
            tlv(o, param::EPC_DATA, |e| {
                put(e, (t.epc.len() * 8) as u16);
                e.extend_from_slice(&t.epc);
            });
        }
        tv_some(o, param::ROSPEC_ID, t.rospec_id);
        tv_some(o, param::ANTENNA_ID, t.antenna);
        tv_some(o, param::PEAK_RSSI, t.peak_rssi);
        tv_some(o, param::CHANNEL_INDEX, t.channel_index);
        tv_some(o, param::FIRST_SEEN_UTC, t.first_seen_utc_us);
        tv_some(o, param::FIRST_SEEN_UPTIME, t.first_seen_uptime_us);
        tv_some(o, param::LAST_SEEN_UTC, t.last_seen_utc_us);
        tv_some(o, param::TAG_SEEN_COUNT, t.seen_count);
        tv_some(o, param::C1G2_PC, t.pc);
    });
}

fn put_event_data(out: &mut Vec<u8>, e: &EventData) {
    tlv(out, param::READER_EVENT_NOTIFICATION_DATA, |o| {
        let kind = if e.utc {
            param::UTC_TIMESTAMP
        } else {
            param::UPTIME
        };
        tlv(o, kind, |t| put(t, e.timestamp_us));
        for ev in &e.events {
            match ev {
                ReaderEvent::ConnectionAttempt { status } => {
                    tlv(o, param::CONNECTION_ATTEMPT_EVENT, |v| {
                        put(v, status);
                    });
                }
                ReaderEvent::ConnectionClose => tlv(o, param::CONNECTION_CLOSE_EVENT, |_| {}),
                ReaderEvent::Antenna { connected, antenna } => {
                    tlv(o, param::ANTENNA_EVENT, |v| {
                        v.push(u8::from(*connected));
                        put(v, antenna);
                    });
                }
                ReaderEvent::RoSpec { kind, rospec_id } => tlv(o, param::ROSPEC_EVENT, |v| {
                    v.push(*kind);
                    put(v, rospec_id);
                    put(v, 0u32);
                }),
                ReaderEvent::ReaderException { message } => {
                    tlv(o, param::READER_EXCEPTION_EVENT, |v| put_utf8(v, message));
                }
                ReaderEvent::Other { .. } => {}
            }
        }
    });
}

#[cfg(test)]
mod tests;
