//! Demo companies in the programme portal, one at each of its stages, so the officers'
//! queue and the company pages have something to show.

use anyhow::Context as _;
use central::Central;
use central::portal::{Answer, FindingKind, Met, Status};
use central::service::Registration;

/// How far a demo company has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Self-registered; an officer has to confirm it.
    Pending,
    /// Confirmed; the self-assessment is half done and shows a gap.
    Assessing,
    /// Applied; an officer has taken it for review.
    UnderReview,
    /// Visited and validated, its required change answered: a second admin certifies it.
    Validated,
}

impl Stage {
    /// Words for the start-up listing.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "registration to confirm",
            Self::Assessing => "self-assessment with a gap",
            Self::UnderReview => "application under review",
            Self::Validated => "validated, ready for certification by admin",
        }
    }
}

/// Operator id, company name, type of operator, company user, stage.
pub const COMPANIES: [(&str, &str, &str, &str, Stage); 4] = [
    (
        "EU-AEO:PTPORTAL0001",
        "Lusomar Transportes",
        "CARRIER",
        "lusomar",
        Stage::Pending,
    ),
    (
        "EU-AEO:ESPORTAL0002",
        "Conservas del Norte",
        "EXPORTER",
        "conservas",
        Stage::Assessing,
    ),
    (
        "EU-AEO:DEPORTAL0003",
        "Hafen Logistik",
        "WAREHOUSE",
        "hafen",
        Stage::UnderReview,
    ),
    (
        "EU-AEO:NLPORTAL0004",
        "Polder Brokers",
        "BROKER",
        "polder",
        Stage::Validated,
    ),
];

/// Creates the demo companies; `officer` (staff, not an admin) does the officers' steps,
/// so the demo's admin can certify as the second officer.
///
/// # Errors
/// When central refuses a step (it does not for these records).
pub fn seed(hub: &Central, password: &str, officer: &str) -> anyhow::Result<()> {
    for (op, name, kind, user, stage) in COMPANIES {
        let r = Registration {
            operator: op.into(),
            name: name.into(),
            kind: kind.into(),
            user: user.into(),
            password: password.into(),
        };
        let by = (stage != Stage::Pending).then_some(officer);
        hub.register_company(&r, by)
            .with_context(|| format!("demo company {op}"))?;
        if stage == Stage::Pending {
            continue;
        }
        let set = hub.requirements();
        let half = if stage == Stage::Assessing {
            set.len() / 2
        } else {
            set.len()
        };
        let answers = set
            .iter()
            .take(half)
            .enumerate()
            .map(|(i, r)| {
                let met = if stage == Stage::Assessing && i == 2 {
                    Met::Partly
                } else {
                    Met::Yes
                };
                let evidence = format!("{name} security manual, section {}", i + 1);
                (r.id.to_owned(), Answer { met, evidence })
            })
            .collect();
        hub.save_assessment(op, answers, user)?;
        if stage == Stage::Assessing {
            continue;
        }
        hub.submit_application(op, user)?;
        hub.move_application(op, Status::UnderReview, "", officer)?;
        hub.post_message(
            op,
            "Welcome to the programme: write here with any question.",
            officer,
            true,
        )?;
        if stage == Stage::UnderReview {
            continue;
        }
        let today = jiff::Zoned::now().date();
        hub.schedule_visit(op, today, officer)?;
        let deadline = today.checked_add(jiff::Span::new().days(30))?;
        let change = FindingKind::RequiredChange { deadline };
        hub.add_finding(
            op,
            "CS-2",
            change,
            "Keep the seal register by seal number and issuing clerk",
            officer,
        )?;
        hub.add_finding(
            op,
            "CV-2",
            FindingKind::Recommendation,
            "Track trucks on the port run",
            officer,
        )?;
        hub.answer_finding(
            op,
            1,
            "Seal register introduced; kept at the dispatch office",
            user,
        )?;
        hub.move_application(op, Status::Validated, "visit done", officer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_demo_company_is_at_its_stage_and_the_validated_one_certifies_for_the_admin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("central.key");
        central::generate_signing_key(&key).expect("key");
        let mut cfg = central::Config::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().join("central.redb"),
            key,
        );
        cfg.argon2_m_cost_kib = 64;
        cfg.argon2_t_cost = 1;
        let hub = Central::open(&cfg).expect("central");
        hub.add_user("analyst", super::super::DEMO_PASSWORD, "analyst")
            .expect("analyst");
        seed(&hub, super::super::DEMO_PASSWORD, "analyst").expect("seed");
        let status = |op: &str| hub.company(op).expect("read").expect("company").status();
        let [pending, assessing, review, validated] = COMPANIES.map(|c| c.0);
        assert!(
            hub.company(pending)
                .expect("read")
                .expect("c")
                .confirmed_by
                .is_none()
        );
        assert_eq!(status(assessing), None);
        let c = hub.company(assessing).expect("read").expect("c");
        assert_eq!(c.gaps(hub.requirements()).len(), 1);
        assert_eq!(status(review), Some(Status::UnderReview));
        assert_eq!(status(validated), Some(Status::Validated));
        hub.certify(validated, "", "admin")
            .expect("a second officer certifies");
        assert_eq!(status(validated), Some(Status::Certified));
    }
}
