//! Documents a company uploads with its application: what is accepted (PDF, PNG, JPEG,
//! recognised by their first bytes, never by the file name), how large, the name kept,
//! the SHA-256 they are stored under, and the upload form's `multipart/form-data` body
//! (RFC 7578), read here with limits.
//!
//! The bytes are stored apart from the company record, keyed by their SHA-256
//! ([`crate::store::Store::put_document`]); the record lists each document with that hash,
//! so a download can be checked against what was uploaded.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest document accepted, in bytes (5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;
/// Room for the form's other fields and the part headers around the document.
pub const FORM_OVERHEAD_BYTES: usize = 16 * 1024;
/// Most documents one company lists.
pub const MAX_DOCUMENTS: usize = 100;
/// Longest file name kept, in characters.
pub const MAX_NAME_CHARS: usize = 120;
/// Most parts read from one form.
pub const MAX_PARTS: usize = 8;

/// The kinds of document accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentKind {
    Pdf,
    Png,
    Jpeg,
}

impl DocumentKind {
    /// Recognises a document by its first bytes: `%PDF-` (ISO 32000-2, 7.5.2), the PNG
    /// signature (ISO/IEC 15948, 5.2), a JPEG SOI marker followed by a marker (ITU-T T.81,
    /// B.1.1.3).
    #[must_use]
    pub fn sniff(body: &[u8]) -> Option<Self> {
        if body.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if body.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]) {
            Some(Self::Png)
        } else if body.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    /// `SCREAMING_SNAKE` form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "PDF",
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
        }
    }

    /// The media type a download is served with.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }
}

/// One document a company uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: u32,
    /// The file name as uploaded (path removed, control characters dropped).
    pub name: String,
    pub kind: DocumentKind,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex (the key they are stored under).
    pub sha256: String,
    /// The user who uploaded it.
    pub by: String,
    pub at: Timestamp,
}

/// SHA-256 of `body`, lowercase hex.
#[must_use]
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Whether `s` reads as a SHA-256 in lowercase hex.
#[must_use]
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name kept for an uploaded file: the last path component (browsers on some systems
/// send a full path), without control characters, trimmed, at most [`MAX_NAME_CHARS`];
/// `document` when nothing is left.
#[must_use]
pub fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let kept: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let kept = kept.trim();
    if kept.is_empty() {
        "document".to_owned()
    } else {
        kept.to_owned()
    }
}

/// Why an upload form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form is not multipart/form-data with a boundary")]
    NotMultipart,
    #[error("the form ends before its closing boundary")]
    Truncated,
    #[error("a part of the form has no name")]
    Unnamed,
    #[error("the form has more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    /// Set for a file field.
    pub filename: Option<String>,
    pub body: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046, 5.1.1: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `name` and `filename` parameters of a part's `Content-Disposition` header.
fn disposition(headers: &str) -> (Option<String>, Option<String>) {
    let mut name = None;
    let mut filename = None;
    for line in headers.split("\r\n") {
        let Some((h, v)) = line.split_once(':') else {
            continue;
        };
        if !h.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for p in v.split(';').skip(1) {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(v.to_owned()),
                "filename" => filename = Some(v.to_owned()),
                _ => {}
            }
        }
    }
    (name, filename)
}

/// Reads a `multipart/form-data` body into its parts.
///
/// # Errors
/// [`FormError`] naming what is wrong; the caller bounds the body's size.
pub fn parse_form<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, FormError> {
    let b = boundary(content_type).ok_or(FormError::NotMultipart)?;
    let delimiter = format!("--{b}");
    let next = format!("\r\n--{b}");
    let start = find(body, delimiter.as_bytes()).ok_or(FormError::Truncated)?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or(FormError::Truncated)?;
        let head_end = find(rest, b"\r\n\r\n").ok_or(FormError::Truncated)?;
        let headers = String::from_utf8_lossy(&rest[..head_end]);
        let content = &rest[head_end + 4..];
        let end = find(content, next.as_bytes()).ok_or(FormError::Truncated)?;
        let (name, filename) = disposition(&headers);
        let name = name.ok_or(FormError::Unnamed)?;
        if parts.len() >= MAX_PARTS {
            return Err(FormError::TooManyParts);
        }
        parts.push(Part {
            name,
            filename,
            body: &content[..end],
        });
        rest = &content[end + next.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=----b0undary";

    fn form(file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(
            b"------b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n",
        );
        out.extend_from_slice(b"------b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\docs\\\\plan.pdf\"\r\nContent-Type: application/pdf\r\n\r\n");
        out.extend_from_slice(file);
        out.extend_from_slice(b"\r\n------b0undary--\r\n");
        out
    }

    #[test]
    fn reads_the_fields_and_the_file_of_a_form() {
        let file = b"%PDF-1.7\r\n--not a boundary\r\n\x00\xff";
        let body = form(file);
        let parts = parse_form(CT, &body).expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].body),
            ("csrf", &b"tok"[..])
        );
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].body, file);
        assert_eq!(
            clean_name(parts[1].filename.as_deref().unwrap_or("")),
            "plan.pdf"
        );
    }

    #[test]
    fn refuses_a_form_cut_short_or_without_a_boundary() {
        let body = form(b"%PDF-1.7");
        assert_eq!(
            parse_form(CT, &body[..body.len() - 20]),
            Err(FormError::Truncated)
        );
        assert_eq!(
            parse_form("application/x-www-form-urlencoded", &body),
            Err(FormError::NotMultipart)
        );
        assert_eq!(
            parse_form("multipart/form-data", &body),
            Err(FormError::NotMultipart)
        );
    }

    #[test]
    fn no_cut_or_changed_byte_of_a_form_makes_the_reader_panic() {
        let body = form(b"%PDF-1.7 body");
        for i in 0..body.len() {
            let _ = parse_form(CT, &body[..i]);
            for b in [0u8, b'\r', b'\n', b'-', b'"', b';', 0xff] {
                let mut m = body.clone();
                m[i] = b;
                let _ = parse_form(CT, &m);
            }
        }
    }

    #[test]
    fn recognises_documents_by_content_not_name() {
        assert_eq!(DocumentKind::sniff(b"%PDF-1.4 x"), Some(DocumentKind::Pdf));
        assert_eq!(
            DocumentKind::sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0]),
            Some(DocumentKind::Png)
        );
        assert_eq!(
            DocumentKind::sniff(&[0xff, 0xd8, 0xff, 0xe0]),
            Some(DocumentKind::Jpeg)
        );
        assert_eq!(DocumentKind::sniff(b"MZ\x90\x00 plan.pdf"), None);
        assert_eq!(DocumentKind::sniff(b""), None);
    }

    #[test]
    fn keeps_a_file_name_without_its_path_or_control_characters() {
        assert_eq!(clean_name("/home/a/seal\u{7}log.png"), "seallog.png");
        assert_eq!(clean_name("  "), "document");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
        assert!(is_sha256_hex(&sha256_hex(b"abc")));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
