//! The AEO programme portal's records and rules: companies, their self-assessment against
//! the programme's minimum security requirements, the application and its status, the
//! validation findings and the message thread.
//!
//! A [`Company`] is one document (stored whole by [`crate::store::Store::update_company`]),
//! so every rule here is a plain function of the record, the actor and the time: the
//! service calls it inside the store's transaction and the store audits what it returns.
//!
//! # Layout
//! - [`requirements`]: the starter set of requirements, each citing its public source.
//! - this module: the records, [`Status`] and its transitions, gaps and completeness.

pub mod requirements;

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use protocol::operator::OperatorId;
use protocol::schema::{ContactPoint, PartyRole};
use serde::{Deserialize, Serialize};

pub use requirements::STARTER;

/// The role string a company user's account carries ([`crate::model::StaffUser::role`]).
/// It is not a staff [`crate::model::Role`], so every staff page and API route refuses it.
pub const COMPANY_ROLE: &str = "company";

/// Longest free text kept from a form (an evidence note, a message, a finding).
pub const MAX_TEXT: usize = 4_000;
/// Most messages a thread keeps (the oldest are dropped past it).
pub const MAX_MESSAGES: usize = 500;
/// Most findings one application holds.
pub const MAX_FINDINGS: usize = 200;
/// Years a certification is valid before the programme re-assesses it.
pub const VALIDITY_YEARS: i16 = 3;

/// Requirement categories (the grouping of the WCO SAFE AEO requirements and CTPAT's
/// criteria categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    BusinessPartner,
    ContainerSeal,
    Conveyance,
    Procedural,
    PhysicalAccess,
    Personnel,
    Training,
    Cybersecurity,
}

/// Whether a requirement must be met to apply, or is advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Must,
    Should,
}

/// One minimum security requirement of the programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub id: &'static str,
    pub category: Category,
    pub level: Level,
    pub title: &'static str,
    pub explanation: &'static str,
    /// The public document it is drawn from, and the section.
    pub source: &'static str,
    pub section: &'static str,
}

/// The company's answer to one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Met {
    Yes,
    Partly,
    No,
}

impl Met {
    /// Parses a form value.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "YES" => Some(Self::Yes),
            "PARTLY" => Some(Self::Partly),
            "NO" => Some(Self::No),
            _ => None,
        }
    }

    /// The form value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "YES",
            Self::Partly => "PARTLY",
            Self::No => "NO",
        }
    }
}

/// An answer with the company's evidence note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub met: Met,
    #[serde(default)]
    pub evidence: String,
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Submitted,
    UnderReview,
    InfoRequested,
    VisitScheduled,
    Validated,
    Certified,
    Suspended,
    Refused,
}

impl Status {
    /// `SCREAMING_SNAKE` form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::UnderReview => "UNDER_REVIEW",
            Self::InfoRequested => "INFO_REQUESTED",
            Self::VisitScheduled => "VISIT_SCHEDULED",
            Self::Validated => "VALIDATED",
            Self::Certified => "CERTIFIED",
            Self::Suspended => "SUSPENDED",
            Self::Refused => "REFUSED",
        }
    }

    /// Whether officers still have to act (the queue shows these).
    #[must_use]
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Certified | Self::Suspended | Self::Refused)
    }
}

/// One line of an application's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub status: Status,
    pub at: Timestamp,
    pub by: String,
    #[serde(default)]
    pub note: String,
}

/// What a validation finding asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingKind {
    /// Must be done by the deadline before certification.
    RequiredChange { deadline: Date },
    /// Advised; needs no answer.
    Recommendation,
}

/// The company's answer to a required change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingAnswer {
    pub text: String,
    pub at: Timestamp,
    pub by: String,
}

/// A validation finding about one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: u32,
    pub requirement: String,
    pub kind: FindingKind,
    pub text: String,
    pub at: Timestamp,
    pub by: String,
    #[serde(default)]
    pub answer: Option<FindingAnswer>,
}

impl Finding {
    /// A required change the company has not answered yet.
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self.kind, FindingKind::RequiredChange { .. }) && self.answer.is_none()
    }
}

/// An application for certification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub submitted_at: Timestamp,
    pub status: Status,
    pub history: Vec<StatusEntry>,
    /// The official handling it (the one who took it for review).
    #[serde(default)]
    pub handler: Option<String>,
    #[serde(default)]
    pub visit_on: Option<Date>,
    /// The official who recorded the validation; certification needs another.
    #[serde(default)]
    pub validated_by: Option<String>,
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl Application {
    /// When the current status was entered.
    #[must_use]
    pub fn since(&self) -> Timestamp {
        self.history.last().map_or(self.submitted_at, |h| h.at)
    }
}

/// One message of the thread between the company and the programme's officials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub at: Timestamp,
    pub by: String,
    /// Whether an official wrote it (else a company user).
    pub official: bool,
    pub text: String,
}

/// A company in the programme, with everything the portal keeps about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// The operator id the registry will know it by (the key).
    pub operator: OperatorId,
    pub name: String,
    /// Its role in the supply chain (the type of operator).
    pub kind: PartyRole,
    pub registered_at: Timestamp,
    /// Who registered it: the company itself, or an officer.
    pub registered_by: String,
    /// Set when a programme officer confirmed a self-registration (at once when an
    /// officer created the company).
    #[serde(default)]
    pub confirmed_by: Option<String>,
    /// User names of its accounts.
    #[serde(default)]
    pub users: Vec<String>,
    /// Self-assessment answers by requirement id.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    #[serde(default)]
    pub application: Option<Application>,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The customs contact point officers assign (also published in the registry).
    #[serde(default)]
    pub contact_point: Option<ContactPoint>,
}

/// Why a portal action is refused (the message is shown to the person).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the company is waiting for a programme officer to confirm its registration")]
    NotConfirmed,
    #[error("the self-assessment is incomplete: {0} requirement(s) unanswered")]
    Incomplete(usize),
    #[error("must-requirements not met: {0}")]
    Gaps(String),
    #[error("an application is already {0}")]
    AlreadyApplied(&'static str),
    #[error("the application is {found}; this needs {expected}")]
    WrongStatus {
        found: &'static str,
        expected: &'static str,
    },
    #[error("required changes are not answered yet: {0}")]
    OpenFindings(String),
    #[error(
        "the official who validated the application ({0}) may not certify it: a second officer must"
    )]
    SameOfficer(String),
    #[error("{0}")]
    Invalid(String),
}

/// Trims a free-text field and refuses an empty or too long one.
///
/// # Errors
/// [`Refusal::Invalid`] naming `what`.
pub fn text(what: &str, s: &str) -> Result<String, Refusal> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Refusal::Invalid(format!("{what} is required")));
    }
    if t.chars().count() > MAX_TEXT {
        return Err(Refusal::Invalid(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(t.to_owned())
}

impl Company {
    /// A new company, confirmed at once when `officer` registered it.
    #[must_use]
    pub fn new(
        operator: OperatorId,
        name: String,
        kind: PartyRole,
        by: &str,
        officer: bool,
        at: Timestamp,
    ) -> Self {
        Self {
            operator,
            name,
            kind,
            registered_at: at,
            registered_by: by.to_owned(),
            confirmed_by: officer.then(|| by.to_owned()),
            users: Vec::new(),
            answers: BTreeMap::new(),
            application: None,
            messages: Vec::new(),
            contact_point: None,
        }
    }

    /// Requirements of `set` not answered yet.
    #[must_use]
    pub fn unanswered<'a>(&self, set: &'a [Requirement]) -> Vec<&'a Requirement> {
        set.iter()
            .filter(|r| !self.answers.contains_key(r.id))
            .collect()
    }

    /// The gaps: must-requirements of `set` answered other than fully met.
    #[must_use]
    pub fn gaps<'a>(&self, set: &'a [Requirement]) -> Vec<&'a Requirement> {
        set.iter()
            .filter(|r| r.level == Level::Must)
            .filter(|r| self.answers.get(r.id).is_some_and(|a| a.met != Met::Yes))
            .collect()
    }

    /// The application's status, if there is one.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        self.application.as_ref().map(|a| a.status)
    }

    /// Stores the answers (`None` leaves a requirement unanswered). Answers may change
    /// until the application is submitted, and again while more information is requested.
    ///
    /// # Errors
    /// Not confirmed, an application under way, an unknown requirement or a long note.
    pub fn answer(
        &mut self,
        set: &[Requirement],
        answers: BTreeMap<String, Answer>,
    ) -> Result<String, Refusal> {
        self.check_confirmed()?;
        if let Some(s) = self.status().filter(|s| *s != Status::InfoRequested) {
            return Err(Refusal::AlreadyApplied(s.as_str()));
        }
        for (id, a) in &answers {
            if !set.iter().any(|r| r.id == id) {
                return Err(Refusal::Invalid(format!("unknown requirement {id}")));
            }
            if a.evidence.chars().count() > MAX_TEXT {
                return Err(Refusal::Invalid(format!(
                    "evidence for {id} is longer than {MAX_TEXT} characters"
                )));
            }
        }
        let n = answers.len();
        self.answers = answers;
        Ok(format!("self-assessment saved ({n} answers)"))
    }

    /// Submits the application from a complete self-assessment without gaps.
    ///
    /// # Errors
    /// Not confirmed, already applied, unanswered requirements or gaps.
    pub fn submit(
        &mut self,
        set: &[Requirement],
        by: &str,
        at: Timestamp,
    ) -> Result<String, Refusal> {
        self.check_confirmed()?;
        if let Some(s) = self.status() {
            return Err(Refusal::AlreadyApplied(s.as_str()));
        }
        let open = self.unanswered(set).len();
        if open > 0 {
            return Err(Refusal::Incomplete(open));
        }
        let gaps = self.gaps(set);
        if !gaps.is_empty() {
            let ids: Vec<&str> = gaps.iter().map(|r| r.id).collect();
            return Err(Refusal::Gaps(ids.join(", ")));
        }
        self.application = Some(Application {
            submitted_at: at,
            status: Status::Submitted,
            history: vec![StatusEntry {
                status: Status::Submitted,
                at,
                by: by.to_owned(),
                note: String::new(),
            }],
            handler: None,
            visit_on: None,
            validated_by: None,
            findings: Vec::new(),
        });
        Ok("application submitted".to_owned())
    }

    fn check_confirmed(&self) -> Result<(), Refusal> {
        if self.confirmed_by.is_none() {
            return Err(Refusal::NotConfirmed);
        }
        Ok(())
    }

    fn app_in(
        &mut self,
        allowed: &[Status],
        expected: &'static str,
    ) -> Result<&mut Application, Refusal> {
        let Some(app) = self.application.as_mut() else {
            return Err(Refusal::WrongStatus {
                found: "not submitted",
                expected,
            });
        };
        if !allowed.contains(&app.status) {
            return Err(Refusal::WrongStatus {
                found: app.status.as_str(),
                expected,
            });
        }
        Ok(app)
    }

    /// Moves the application to `to` by an official, with a note.
    ///
    /// # Errors
    /// [`Refusal::WrongStatus`] when the transition is not allowed from the current
    /// status; certification also needs every required change answered and an official
    /// other than the validating one.
    pub fn transition(
        &mut self,
        to: Status,
        note: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<String, Refusal> {
        use Status as S;
        let (from, expected): (&[Status], &'static str) = match to {
            S::UnderReview => (
                &[S::Submitted, S::InfoRequested],
                "SUBMITTED or INFO_REQUESTED",
            ),
            S::InfoRequested => (
                &[S::UnderReview, S::VisitScheduled],
                "UNDER_REVIEW or VISIT_SCHEDULED",
            ),
            S::VisitScheduled => (&[S::UnderReview], "UNDER_REVIEW"),
            S::Validated => (&[S::VisitScheduled], "VISIT_SCHEDULED"),
            S::Certified => (&[S::Validated, S::Suspended], "VALIDATED or SUSPENDED"),
            S::Suspended => (&[S::Certified], "CERTIFIED"),
            S::Refused => (
                &[
                    S::Submitted,
                    S::UnderReview,
                    S::InfoRequested,
                    S::VisitScheduled,
                    S::Validated,
                ],
                "an open application",
            ),
            S::Submitted => (&[], "a new self-assessment"),
        };
        let app = self.app_in(from, expected)?;
        if to == S::Certified && app.status == S::Validated {
            if app.validated_by.as_deref() == Some(by) {
                return Err(Refusal::SameOfficer(by.to_owned()));
            }
            let open: Vec<String> = app
                .findings
                .iter()
                .filter(|f| f.is_open())
                .map(|f| format!("#{}", f.id))
                .collect();
            if !open.is_empty() {
                return Err(Refusal::OpenFindings(open.join(", ")));
            }
        }
        if matches!(to, S::InfoRequested | S::Refused | S::Suspended) && note.trim().is_empty() {
            return Err(Refusal::Invalid("a reason is required".into()));
        }
        if note.chars().count() > MAX_TEXT {
            return Err(Refusal::Invalid(format!(
                "the note is longer than {MAX_TEXT} characters"
            )));
        }
        match to {
            S::UnderReview => app.handler = Some(by.to_owned()),
            S::Validated => app.validated_by = Some(by.to_owned()),
            _ => {}
        }
        let from = app.status;
        app.status = to;
        app.history.push(StatusEntry {
            status: to,
            at,
            by: by.to_owned(),
            note: note.trim().to_owned(),
        });
        Ok(format!("application {} -> {}", from.as_str(), to.as_str()))
    }

    /// Schedules the validation visit.
    ///
    /// # Errors
    /// As [`Company::transition`] to [`Status::VisitScheduled`].
    pub fn schedule_visit(&mut self, on: Date, by: &str, at: Timestamp) -> Result<String, Refusal> {
        let what = self.transition(Status::VisitScheduled, &format!("visit on {on}"), by, at)?;
        if let Some(app) = self.application.as_mut() {
            app.visit_on = Some(on);
        }
        Ok(what)
    }

    /// Records a validation finding about one requirement.
    ///
    /// # Errors
    /// Outside a scheduled visit, an unknown requirement, empty text, too many findings.
    pub fn add_finding(
        &mut self,
        set: &[Requirement],
        requirement: &str,
        kind: FindingKind,
        text: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<String, Refusal> {
        if !set.iter().any(|r| r.id == requirement) {
            return Err(Refusal::Invalid(format!(
                "unknown requirement {requirement}"
            )));
        }
        let text = self::text("the finding", text)?;
        let app = self.app_in(&[Status::VisitScheduled], "VISIT_SCHEDULED")?;
        if app.findings.len() >= MAX_FINDINGS {
            return Err(Refusal::Invalid(format!("at most {MAX_FINDINGS} findings")));
        }
        let id = app.findings.iter().map(|f| f.id).max().unwrap_or(0) + 1;
        app.findings.push(Finding {
            id,
            requirement: requirement.to_owned(),
            kind,
            text,
            at,
            by: by.to_owned(),
            answer: None,
        });
        let what = match kind {
            FindingKind::RequiredChange { deadline } => format!("required change (by {deadline})"),
            FindingKind::Recommendation => "recommendation".to_owned(),
        };
        Ok(format!("finding #{id} on {requirement}: {what}"))
    }

    /// The company answers a required change.
    ///
    /// # Errors
    /// An unknown finding, a recommendation, empty text, or after the decision.
    pub fn answer_finding(
        &mut self,
        id: u32,
        text: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<String, Refusal> {
        let text = self::text("the answer", text)?;
        let app = self.app_in(
            &[Status::VisitScheduled, Status::Validated],
            "VISIT_SCHEDULED or VALIDATED",
        )?;
        let Some(f) = app.findings.iter_mut().find(|f| f.id == id) else {
            return Err(Refusal::Invalid(format!("no finding #{id}")));
        };
        if f.kind == FindingKind::Recommendation {
            return Err(Refusal::Invalid(format!(
                "finding #{id} is a recommendation; it needs no answer"
            )));
        }
        f.answer = Some(FindingAnswer {
            text,
            at,
            by: by.to_owned(),
        });
        Ok(format!("finding #{id} answered"))
    }

    /// Adds a message to the thread.
    ///
    /// # Errors
    /// Empty or too long text.
    pub fn post(
        &mut self,
        text: &str,
        by: &str,
        official: bool,
        at: Timestamp,
    ) -> Result<String, Refusal> {
        let text = self::text("the message", text)?;
        if self.messages.len() >= MAX_MESSAGES {
            self.messages.remove(0);
        }
        self.messages.push(Message {
            at,
            by: by.to_owned(),
            official,
            text,
        });
        Ok(format!(
            "message from {}",
            if official {
                "an official"
            } else {
                "the company"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn company() -> Company {
        let op = OperatorId::parse("EU-AEO:DE123456789012345").expect("op");
        Company::new(
            op,
            "Acme".into(),
            PartyRole::Exporter,
            "officer",
            true,
            ts("2026-01-01T00:00:00Z"),
        )
    }

    fn all_yes() -> BTreeMap<String, Answer> {
        STARTER
            .iter()
            .map(|r| {
                (
                    r.id.to_owned(),
                    Answer {
                        met: Met::Yes,
                        evidence: "procedure P-1".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn every_starter_requirement_cites_a_source_and_ids_are_unique() {
        let mut ids: Vec<&str> = STARTER.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), STARTER.len());
        assert!(
            STARTER
                .iter()
                .all(|r| !r.source.is_empty() && !r.section.is_empty())
        );
        assert!(STARTER.iter().any(|r| r.level == Level::Should));
    }

    #[test]
    fn a_must_gap_blocks_the_application_and_is_named() {
        let mut c = company();
        let mut a = all_yes();
        a.insert(
            "CS-1".into(),
            Answer {
                met: Met::Partly,
                evidence: String::new(),
            },
        );
        a.insert(
            "CV-2".into(),
            Answer {
                met: Met::No,
                evidence: String::new(),
            },
        );
        c.answer(STARTER, a).expect("saved");
        let gaps: Vec<&str> = c.gaps(STARTER).iter().map(|r| r.id).collect();
        assert_eq!(gaps, ["CS-1"], "a should-requirement is not a gap");
        let e = c.submit(STARTER, "u", ts("2026-01-02T00:00:00Z"));
        assert_eq!(e, Err(Refusal::Gaps("CS-1".into())));
    }

    #[test]
    fn an_incomplete_self_assessment_cannot_be_submitted() {
        let mut c = company();
        let mut a = all_yes();
        a.remove("TR-2");
        c.answer(STARTER, a).expect("saved");
        assert_eq!(
            c.submit(STARTER, "u", ts("2026-01-02T00:00:00Z")),
            Err(Refusal::Incomplete(1))
        );
    }

    #[test]
    fn an_unconfirmed_company_cannot_apply() {
        let mut c = company();
        c.confirmed_by = None;
        assert_eq!(c.answer(STARTER, all_yes()), Err(Refusal::NotConfirmed));
    }

    #[test]
    fn certification_needs_another_officer_and_answered_changes() {
        let mut c = company();
        let t = ts("2026-01-02T00:00:00Z");
        c.answer(STARTER, all_yes()).expect("saved");
        c.submit(STARTER, "u", t).expect("submitted");
        c.transition(Status::UnderReview, "", "olga", t)
            .expect("review");
        c.schedule_visit(Date::constant(2026, 2, 1), "olga", t)
            .expect("visit");
        let change = FindingKind::RequiredChange {
            deadline: Date::constant(2026, 3, 1),
        };
        c.add_finding(STARTER, "CS-2", change, "log seals by number", "olga", t)
            .expect("finding");
        c.transition(Status::Validated, "", "olga", t)
            .expect("validated");
        assert_eq!(
            c.transition(Status::Certified, "", "olga", t),
            Err(Refusal::SameOfficer("olga".into()))
        );
        assert_eq!(
            c.transition(Status::Certified, "", "pia", t),
            Err(Refusal::OpenFindings("#1".into()))
        );
        c.answer_finding(1, "seal log introduced", "u", t)
            .expect("answered");
        c.transition(Status::Certified, "", "pia", t)
            .expect("certified");
        assert_eq!(c.status(), Some(Status::Certified));
        let app = c.application.as_ref().expect("app");
        assert_eq!(app.handler.as_deref(), Some("olga"));
        assert_eq!(app.history.len(), 5);
    }

    #[test]
    fn a_finding_is_only_recorded_during_a_visit() {
        let mut c = company();
        let t = ts("2026-01-02T00:00:00Z");
        c.answer(STARTER, all_yes()).expect("saved");
        c.submit(STARTER, "u", t).expect("submitted");
        let e = c.add_finding(STARTER, "CS-2", FindingKind::Recommendation, "x", "olga", t);
        assert!(
            matches!(
                e,
                Err(Refusal::WrongStatus {
                    found: "SUBMITTED",
                    ..
                })
            ),
            "{e:?}"
        );
    }
}
