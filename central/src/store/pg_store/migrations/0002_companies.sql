-- The programme portal's companies (crate::portal::Company), one document each, keyed by
-- the canonical text of the operator id the registry knows the company by.
CREATE TABLE companies (
    operator TEXT COLLATE "C" PRIMARY KEY,
    value JSON NOT NULL
);
