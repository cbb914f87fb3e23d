-- The bytes of documents companies upload in the programme portal, keyed by their
-- SHA-256 (lowercase hex); the company record (companies.value) lists each document with
-- its name, type, size, hash, uploader and time.
CREATE TABLE documents (
    sha256 TEXT COLLATE "C" PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    body BYTEA NOT NULL
);
