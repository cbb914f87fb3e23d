//! The programme portal: company registration and accounts, the self-assessment, the
//! application's life cycle, and certification, which reaches the gates through the
//! registry's one change path ([`Central::import_records`], [`Central::set_status`]):
//! signed and replicated like every other change.

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    AeoStatus, Authorisation, ContactPoint, PartyRole, RegistryRecord, SCHEMA_VERSION,
};

use super::Central;
use crate::auth::{self, AuthError};
use crate::model::StaffUser;
use crate::portal::documents::sha256_hex;
use crate::portal::{
    Answer, COMPANY_ROLE, Company, Document, DocumentKind, FindingKind, MAX_DOCUMENT_BYTES,
    Refusal, STARTER, Status, VALIDITY_YEARS,
};
use crate::registry::RegistryError;
use crate::store::{Stamp, StoreError};

/// Where the registry records certified through the portal say they come from.
pub const PORTAL_SOURCE: &str = "programme portal";

/// Why a portal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A rule of [`crate::portal`] refused it; the text is for the person.
    #[error("{0}")]
    Refused(String),
    #[error("company {0} is not registered")]
    NotFound(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(StoreError),
    /// A document larger than the limit (named, in bytes).
    #[error("a document may be at most {limit} bytes (5 MiB); this one is larger")]
    TooLarge { limit: usize },
    /// A document whose content is not of an accepted type.
    #[error(
        "only PDF, PNG and JPEG documents are accepted (recognised by their content, not their name)"
    )]
    UnsupportedType,
    /// An upload form that could not be read.
    #[error("the upload form could not be read: {0}")]
    Form(#[from] crate::portal::documents::FormError),
}

impl From<StoreError> for PortalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(why) => Self::Refused(why),
            e @ (StoreError::UserExists(_) | StoreError::UnknownUser(_)) => Self::Auth(e.into()),
            other => Self::Store(other),
        }
    }
}

impl From<Refusal> for PortalError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r.to_string())
    }
}

/// A company's registration, from its own form or an officer's.
#[derive(Debug, Clone)]
pub struct Registration {
    pub operator: String,
    pub name: String,
    /// A [`PartyRole`] in its `SCREAMING_SNAKE` form.
    pub kind: String,
    pub user: String,
    pub password: String,
}

/// Parses a [`PartyRole`] from its `SCREAMING_SNAKE` form.
#[must_use]
pub fn parse_kind(s: &str) -> Option<PartyRole> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_uppercase())).ok()
}

/// The authorisation a certification grants: the EU and UK programmes' security one
/// (AEOS), a national programme's security modality otherwise.
fn authorisation(p: Programme) -> Authorisation {
    match p {
        Programme::EuAeo | Programme::UkAeo => Authorisation::Aeos,
        _ => Authorisation::Security,
    }
}

impl Central {
    /// Registers a company with its first user. Self-registration (`officer` `None`)
    /// waits for a programme officer's confirmation; an officer's is confirmed at once.
    ///
    /// # Errors
    /// A malformed operator id, name, kind, user name or weak password; an existing
    /// company or user.
    pub fn register_company(
        &self,
        r: &Registration,
        officer: Option<&str>,
    ) -> Result<Company, PortalError> {
        let operator = OperatorId::parse(&r.operator)
            .map_err(|e| PortalError::Refused(format!("operator id {:?}: {e}", r.operator)))?;
        let name = crate::portal::text("the company name", &r.name)?;
        let Some(kind) = parse_kind(&r.kind) else {
            return Err(PortalError::Refused(format!(
                "type of operator {:?} is not one the programme knows",
                r.kind
            )));
        };
        let user = self.company_user(&r.user, &r.password, &operator)?;
        let now = Timestamp::now();
        let by = officer.unwrap_or(&user.name);
        let mut company = Company::new(operator, name, kind, by, officer.is_some(), now);
        company.users.push(user.name.clone());
        self.inner
            .store
            .add_company(&company, Some(&user), Stamp::new(by, now))?;
        Ok(company)
    }

    /// A company user's account record (checked name and password, hashed).
    fn company_user(
        &self,
        name: &str,
        password: &str,
        operator: &OperatorId,
    ) -> Result<StaffUser, PortalError> {
        super::staff::check_user_name(name)?;
        auth::check_password_strength(password, name)?;
        let phc = self
            .inner
            .passwords
            .hash(password)
            .map_err(AuthError::from)?;
        Ok(StaffUser {
            name: name.to_owned(),
            role: COMPANY_ROLE.to_owned(),
            password_phc: phc,
            created_at: Timestamp::now(),
            lang: protocol::i18n::Lang::default(),
            disabled: false,
            company: Some(operator.to_string()),
        })
    }

    /// Adds another user to a company, as `actor` (one of its users or an officer).
    ///
    /// # Errors
    /// As [`Central::register_company`] for the user; an unknown company.
    pub fn add_company_user(
        &self,
        operator: &str,
        name: &str,
        password: &str,
        actor: &str,
    ) -> Result<Company, PortalError> {
        let Some(company) = self.company(operator)? else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        let user = self.company_user(name, password, &company.operator)?;
        self.inner.store.add_user(&user)?;
        self.change_company(operator, actor, |c| {
            c.users.push(user.name.clone());
            Ok(format!("user {} added", user.name))
        })
    }

    /// One company by its operator id's text (any spelling [`OperatorId::parse`] reads).
    ///
    /// # Errors
    /// Store errors.
    pub fn company(&self, operator: &str) -> Result<Option<Company>, PortalError> {
        let Ok(id) = OperatorId::parse(operator) else {
            return Ok(None);
        };
        Ok(self.inner.store.company(&id.to_string())?)
    }

    /// Every company.
    ///
    /// # Errors
    /// Store errors.
    pub fn companies(&self) -> Result<Vec<Company>, PortalError> {
        Ok(self.inner.store.companies()?)
    }

    /// The programme's requirements (the starter set).
    #[must_use]
    pub fn requirements(&self) -> &'static [crate::portal::Requirement] {
        STARTER
    }

    /// Applies one rule of [`crate::portal`] to a company in the store's transaction,
    /// audited as by `actor` with what the rule returned.
    ///
    /// # Errors
    /// The rule's refusal, an unknown company, store errors.
    pub fn change_company(
        &self,
        operator: &str,
        actor: &str,
        mut rule: impl FnMut(&mut Company) -> Result<String, Refusal> + Send,
    ) -> Result<Company, PortalError> {
        let Ok(id) = OperatorId::parse(operator) else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        let key = id.to_string();
        if self.inner.store.company(&key)?.is_none() {
            return Err(PortalError::NotFound(key));
        }
        let out = self.inner.store.update_company(
            &key,
            Stamp::new(actor, Timestamp::now()),
            &mut |c| rule(c).map_err(|r| StoreError::Refused(r.to_string())),
        )?;
        Ok(out)
    }

    /// A programme officer confirms a self-registration.
    ///
    /// # Errors
    /// Already confirmed, unknown company, store errors.
    pub fn confirm_company(&self, operator: &str, officer: &str) -> Result<Company, PortalError> {
        self.change_company(operator, officer, |c| {
            if c.confirmed_by.is_some() {
                return Err(Refusal::Invalid("the company is already confirmed".into()));
            }
            c.confirmed_by = Some(officer.to_owned());
            Ok("registration confirmed".into())
        })
    }

    /// Saves the self-assessment.
    ///
    /// # Errors
    /// As [`Company::answer`].
    pub fn save_assessment(
        &self,
        operator: &str,
        answers: BTreeMap<String, Answer>,
        actor: &str,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, actor, |c| c.answer(STARTER, answers.clone()))
    }

    /// Submits the application.
    ///
    /// # Errors
    /// As [`Company::submit`].
    pub fn submit_application(&self, operator: &str, actor: &str) -> Result<Company, PortalError> {
        self.change_company(operator, actor, |c| {
            c.submit(STARTER, actor, Timestamp::now())
        })
    }

    /// An official moves the application (review, more information, validated, refused).
    /// Certification, suspension and reinstatement go through [`Central::certify`] and
    /// [`Central::suspend_company`], which also change the registry.
    ///
    /// # Errors
    /// As [`Company::transition`]; [`PortalError::Refused`] for the statuses that change
    /// the registry.
    pub fn move_application(
        &self,
        operator: &str,
        to: Status,
        note: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        if matches!(to, Status::Certified | Status::Suspended | Status::Revoked) {
            return Err(PortalError::Refused(format!(
                "{} changes the registry: use certify, suspend or revoke",
                to.as_str()
            )));
        }
        self.change_company(operator, officer, |c| {
            c.transition(to, note, officer, Timestamp::now())
        })
    }

    /// Schedules the validation visit.
    ///
    /// # Errors
    /// As [`Company::schedule_visit`].
    pub fn schedule_visit(
        &self,
        operator: &str,
        on: jiff::civil::Date,
        officer: &str,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, officer, |c| {
            c.schedule_visit(on, officer, Timestamp::now())
        })
    }

    /// Records a validation finding.
    ///
    /// # Errors
    /// As [`Company::add_finding`].
    pub fn add_finding(
        &self,
        operator: &str,
        requirement: &str,
        kind: FindingKind,
        text: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, officer, |c| {
            c.add_finding(STARTER, requirement, kind, text, officer, Timestamp::now())
        })
    }

    /// The company answers a required change.
    ///
    /// # Errors
    /// As [`Company::answer_finding`].
    pub fn answer_finding(
        &self,
        operator: &str,
        id: u32,
        text: &str,
        actor: &str,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, actor, |c| {
            c.answer_finding(id, text, actor, Timestamp::now())
        })
    }

    /// Adds a message to the company's thread.
    ///
    /// # Errors
    /// As [`Company::post`].
    pub fn post_message(
        &self,
        operator: &str,
        text: &str,
        actor: &str,
        official: bool,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, actor, |c| {
            c.post(text, actor, official, Timestamp::now())
        })
    }

    /// Stores a document a company user uploads and lists it on the company's record
    /// with its name, type, size, SHA-256, uploader and time (audited `company.change`).
    /// The type is recognised from the content ([`DocumentKind::sniff`]).
    ///
    /// # Errors
    /// [`PortalError::TooLarge`], [`PortalError::UnsupportedType`], an unconfirmed or
    /// unknown company, too many documents, store errors.
    pub fn upload_document(
        &self,
        operator: &str,
        name: &str,
        body: &[u8],
        actor: &str,
    ) -> Result<Company, PortalError> {
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(PortalError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let kind = DocumentKind::sniff(body).ok_or(PortalError::UnsupportedType)?;
        let Some(company) = self.company(operator)? else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        if company.confirmed_by.is_none() {
            return Err(Refusal::NotConfirmed.into());
        }
        let name = crate::portal::documents::clean_name(name);
        let hash = sha256_hex(body);
        let size = body.len() as u64;
        // Bytes first: the record never lists a document whose bytes are not stored.
        self.inner.store.put_document(&hash, body)?;
        self.change_company(operator, actor, |c| {
            c.add_document(&name, kind, size, &hash, actor, Timestamp::now())
        })
    }

    /// One document a company lists, with its bytes, checked against the SHA-256 it was
    /// listed with. The caller has checked that the reader may see this company.
    ///
    /// # Errors
    /// [`PortalError::NotFound`] for an unknown company or document; a store error when
    /// the bytes are missing or do not match their hash.
    pub fn company_document(
        &self,
        operator: &str,
        id: u32,
    ) -> Result<(Document, Vec<u8>), PortalError> {
        let Some(company) = self.company(operator)? else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        let Some(doc) = company.document(id).cloned() else {
            return Err(PortalError::NotFound(format!(
                "{} document #{id}",
                company.operator
            )));
        };
        let body = self.inner.store.document(&doc.sha256)?;
        match body {
            Some(b) if sha256_hex(&b) == doc.sha256 => Ok((doc, b)),
            found => Err(PortalError::Store(StoreError::Corrupt {
                table: "documents",
                key: doc.sha256.clone(),
                why: if found.is_some() {
                    "the stored bytes do not match their SHA-256".into()
                } else {
                    "listed by the company but not stored".into()
                },
            })),
        }
    }

    /// Sets the company's customs contact point (published in its registry record at
    /// certification).
    ///
    /// # Errors
    /// An empty name, unknown company, store errors.
    pub fn set_contact_point(
        &self,
        operator: &str,
        contact: ContactPoint,
        officer: &str,
    ) -> Result<Company, PortalError> {
        self.change_company(operator, officer, |c| {
            let name = crate::portal::text("the contact's name", &contact.name)?;
            let what = format!("contact point {name}");
            c.contact_point = Some(ContactPoint {
                name,
                ..contact.clone()
            });
            Ok(what)
        })
    }

    /// Certifies a validated application (or reinstates a suspended one): checks the rule
    /// ([`Company::transition`]: another official than the validating one, every required
    /// change answered), writes the operator's registry record through the registry's
    /// change path (signed and replicated to every gate), then records the decision.
    ///
    /// # Errors
    /// The rule's refusal, registry or store errors.
    pub fn certify(
        &self,
        operator: &str,
        note: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        let Some(mut c) = self.company(operator)? else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        let now = Timestamp::now();
        let was = c.status();
        c.transition(Status::Certified, note, officer, now)?;
        if was == Some(Status::Suspended) {
            let reason = if note.trim().is_empty() {
                "reinstated in the programme portal"
            } else {
                note.trim()
            };
            self.set_status(&c.operator, AeoStatus::Active, reason, officer)?;
        } else {
            let record = self.certified_record(&c, officer, now)?;
            self.import_records(vec![record], officer)?;
        }
        self.change_company(operator, officer, |c| {
            c.transition(Status::Certified, note, officer, now)
        })
    }

    fn certified_record(
        &self,
        c: &Company,
        officer: &str,
        now: Timestamp,
    ) -> Result<RegistryRecord, PortalError> {
        let existing = self.inner.store.operator(&c.operator)?;
        let valid_to = now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(jiff::Span::new().years(VALIDITY_YEARS))
            .ok()
            .map(|z| z.timestamp());
        let auth = authorisation(c.operator.programme());
        let mut authorisations = existing
            .as_ref()
            .map(|r| r.authorisations.clone())
            .unwrap_or_default();
        if !authorisations.contains(&auth) {
            authorisations.push(auth);
        }
        let mut roles = existing
            .as_ref()
            .map(|r| r.roles.clone())
            .unwrap_or_default();
        if !roles.contains(&c.kind) {
            roles.push(c.kind);
        }
        let contact = c.contact_point.clone().unwrap_or_else(|| ContactPoint {
            name: officer.to_owned(),
            phone: None,
            email: None,
        });
        Ok(RegistryRecord {
            v: SCHEMA_VERSION,
            operator: c.operator.clone(),
            name: c.name.clone(),
            authorisations,
            status: AeoStatus::Active,
            status_since: now,
            valid_from: now,
            valid_to,
            roles,
            contact_point: Some(contact),
            linked_ids: existing.map(|r| r.linked_ids).unwrap_or_default(),
            source: PORTAL_SOURCE.to_owned(),
            as_of: now,
        })
    }

    /// Suspends a certified company: the registry's status change (signed and replicated
    /// like every change), then the application's status, with the reason the company
    /// sees.
    ///
    /// # Errors
    /// Not certified, an empty reason, registry or store errors.
    pub fn suspend_company(
        &self,
        operator: &str,
        reason: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        self.withdraw(
            operator,
            (Status::Suspended, AeoStatus::Suspended),
            reason,
            officer,
        )
    }

    /// Revokes a certified or suspended company's certification: the registry's status
    /// change to REVOKED (signed and replicated like every change, so its next truck is
    /// not FAST), then the application's status, with the reason the company sees.
    ///
    /// # Errors
    /// Not certified or suspended, an empty reason, registry or store errors.
    pub fn revoke_company(
        &self,
        operator: &str,
        reason: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        self.withdraw(
            operator,
            (Status::Revoked, AeoStatus::Revoked),
            reason,
            officer,
        )
    }

    /// Sets a company's registry status to `registry`, then its application status to
    /// `to`, with `reason`. The transition is checked on a copy first, so a refused one
    /// changes neither.
    fn withdraw(
        &self,
        operator: &str,
        (to, registry): (Status, AeoStatus),
        reason: &str,
        officer: &str,
    ) -> Result<Company, PortalError> {
        let Some(mut c) = self.company(operator)? else {
            return Err(PortalError::NotFound(operator.to_owned()));
        };
        let now = Timestamp::now();
        c.transition(to, reason, officer, now)?;
        self.set_status(&c.operator, registry, reason, officer)?;
        self.change_company(operator, officer, |c| {
            c.transition(to, reason, officer, now)
        })
    }
}
