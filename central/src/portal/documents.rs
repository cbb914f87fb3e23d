//! Documents a company uploads with its application: what is accepted (PDF, PNG, JPEG,
//! recognised by their first bytes, never by the file name), how large, the name kept,
//! the SHA-256 they are stored under, and the upload form's `multipart/form-data` body
//! (RFC 7578), read with limits.
//!
//! The bytes are stored apart from the company record, keyed by their SHA-256
//! ([`crate::store::Store::put_document`]); the record lists each document with that hash,
//! so a download can be checked against what was uploaded.

use axum::body::Bytes;
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
    #[error("the form could not be read: {0}")]
    Malformed(String),
    #[error("a part of the form has no name")]
    Unnamed,
    #[error("the form has more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// Set for a file field.
    pub filename: Option<String>,
    pub body: Bytes,
}

/// Reads a `multipart/form-data` body (already read whole, the caller bounding its
/// size) into its parts, with the `multer` crate (the reader behind axum's own
/// multipart extractor): at most [`MAX_PARTS`] parts, none larger than the body.
///
/// # Errors
/// [`FormError`] naming what is wrong.
pub async fn parse_form(content_type: &str, body: Bytes) -> Result<Vec<Part>, FormError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| FormError::NotMultipart)?;
    let limit = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let malformed = |e: multer::Error| FormError::Malformed(e.to_string());
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        if parts.len() >= MAX_PARTS {
            return Err(FormError::TooManyParts);
        }
        let name = field.name().ok_or(FormError::Unnamed)?.to_owned();
        let filename = field.file_name().map(str::to_owned);
        let body = field.bytes().await.map_err(malformed)?;
        parts.push(Part {
            name,
            filename,
            body,
        });
    }
    Ok(parts)
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

    async fn parse(ct: &str, body: &[u8]) -> Result<Vec<Part>, FormError> {
        parse_form(ct, Bytes::copy_from_slice(body)).await
    }

    #[tokio::test]
    async fn reads_the_fields_and_the_file_of_a_form() {
        let file = b"%PDF-1.7\r\n--not a boundary\r\n\x00\xff";
        let body = form(file);
        let parts = parse(CT, &body).await.expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), &parts[0].body[..]),
            ("csrf", &b"tok"[..])
        );
        assert_eq!(parts[1].name, "file");
        assert_eq!(&parts[1].body[..], file);
        assert_eq!(
            clean_name(parts[1].filename.as_deref().unwrap_or("")),
            "plan.pdf"
        );
    }

    #[tokio::test]
    async fn refuses_a_form_cut_short_without_a_boundary_or_with_too_many_parts() {
        let body = form(b"%PDF-1.7");
        assert!(matches!(
            parse(CT, &body[..body.len() - 20]).await,
            Err(FormError::Malformed(_))
        ));
        assert_eq!(
            parse("application/x-www-form-urlencoded", &body).await,
            Err(FormError::NotMultipart)
        );
        assert_eq!(
            parse("multipart/form-data", &body).await,
            Err(FormError::NotMultipart)
        );
        let mut many = Vec::new();
        for i in 0..=MAX_PARTS {
            many.extend_from_slice(
                format!(
                    "------b0undary\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n"
                )
                .as_bytes(),
            );
        }
        many.extend_from_slice(b"------b0undary--\r\n");
        assert_eq!(parse(CT, &many).await, Err(FormError::TooManyParts));
    }

    #[tokio::test]
    async fn no_cut_or_changed_byte_of_a_form_makes_the_reader_panic() {
        let body = form(b"%PDF-1.7 body");
        for i in 0..body.len() {
            let _ = parse(CT, &body[..i]).await;
            for b in [0u8, b'\r', b'\n', b'-', b'"', b';', 0xff] {
                let mut m = body.clone();
                m[i] = b;
                let _ = parse(CT, &m).await;
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
