//! The programme's starter set of minimum security requirements.
//!
//! Written for this programme in its own words from two public sources, which each
//! requirement cites by document and section title: the WCO SAFE Framework of Standards
//! (2021 edition), Annex 4 "AEO conditions, requirements and benefits", and U.S. CBP's
//! CTPAT Minimum Security Criteria (2019/2020 revision, the criteria categories shared by
//! every business entity type). A programme replaces or extends this set; the portal reads
//! requirements as data ([`Requirement`]), never by matching their text.

use super::{Category, Level, Requirement};

const SAFE: &str = "WCO SAFE Framework of Standards (2021), Annex 4";
const CTPAT: &str = "CBP CTPAT Minimum Security Criteria (2020)";

/// Every requirement of the starter set, in the order the self-assessment shows them.
pub const STARTER: &[Requirement] = &[
    Requirement {
        id: "BP-1",
        category: Category::BusinessPartner,
        level: Level::Must,
        title: "Business partners are screened before and during the relationship",
        explanation: "Keep a written procedure to check new and existing partners (carriers, brokers, suppliers) for security risk, and record the result and the date of each check.",
        source: SAFE,
        section: "Trading partner security; CTPAT: Business Partners",
    },
    Requirement {
        id: "BP-2",
        category: Category::BusinessPartner,
        level: Level::Should,
        title: "Partners' own AEO or equivalent status is used",
        explanation: "Where a partner holds AEO, CTPAT or a mutually recognised status, record its operator id and rely on it; otherwise ask for written security commitments.",
        source: CTPAT,
        section: "Business Partners",
    },
    Requirement {
        id: "CS-1",
        category: Category::ContainerSeal,
        level: Level::Must,
        title: "High-security seals meeting ISO 17712 on every loaded container",
        explanation: "Only seals classed H under ISO 17712 are affixed to loaded containers bound for the programme's ports; seal numbers are recorded on the shipping documents.",
        source: CTPAT,
        section: "Seal Security",
    },
    Requirement {
        id: "CS-2",
        category: Category::ContainerSeal,
        level: Level::Must,
        title: "Seals are controlled, logged and verified",
        explanation: "Seal stock is kept locked, issued by named staff, logged by number, and each seal is checked by the view-verify-tug-twist method when affixed and on arrival.",
        source: CTPAT,
        section: "Seal Security",
    },
    Requirement {
        id: "CV-1",
        category: Category::Conveyance,
        level: Level::Must,
        title: "Containers and trucks are inspected before loading",
        explanation: "A documented multi-point inspection of every container, trailer and tractor is done before stuffing, signed by the inspector, with findings reported.",
        source: CTPAT,
        section: "Conveyance and Instruments of International Traffic Security",
    },
    Requirement {
        id: "CV-2",
        category: Category::Conveyance,
        level: Level::Should,
        title: "Conveyances are tracked in transit",
        explanation: "Trucks carrying goods to the programme's ports are tracked (GPS or check-ins) and unexplained stops or route deviations are investigated.",
        source: SAFE,
        section: "Conveyance security",
    },
    Requirement {
        id: "PR-1",
        category: Category::Procedural,
        level: Level::Must,
        title: "Shipping documents are complete, accurate and protected",
        explanation: "Cargo is checked against the order and manifest (pieces, weight, marks); discrepancies are resolved and reported; documents are protected against change and loss.",
        source: SAFE,
        section: "Cargo security",
    },
    Requirement {
        id: "PR-2",
        category: Category::Procedural,
        level: Level::Must,
        title: "Security incidents are reported to customs",
        explanation: "A written procedure says who reports anomalies, tampered seals and suspected smuggling to customs and other authorities, and how quickly.",
        source: SAFE,
        section: "Crisis management and incident recovery",
    },
    Requirement {
        id: "PA-1",
        category: Category::PhysicalAccess,
        level: Level::Must,
        title: "Access to cargo areas is controlled",
        explanation: "Employees, visitors and drivers are identified at entry; visitors are escorted; access badges are issued, recovered and revoked under a procedure.",
        source: CTPAT,
        section: "Physical Access Controls",
    },
    Requirement {
        id: "PA-2",
        category: Category::PhysicalAccess,
        level: Level::Should,
        title: "Premises are fenced, lit and watched",
        explanation: "Cargo handling and storage areas have perimeter barriers, adequate lighting and, where the risk calls for it, alarms or video surveillance that is reviewed.",
        source: CTPAT,
        section: "Physical Security",
    },
    Requirement {
        id: "PE-1",
        category: Category::Personnel,
        level: Level::Must,
        title: "Staff in security-sensitive posts are vetted",
        explanation: "Applicants for posts touching cargo, seals or data are checked as the law allows (identity, employment history, criminal records) and re-checked periodically.",
        source: SAFE,
        section: "Personnel security",
    },
    Requirement {
        id: "TR-1",
        category: Category::Training,
        level: Level::Must,
        title: "Staff are trained to recognise threats",
        explanation: "A training programme covers seal checks, conveyance inspection, internal conspiracies and how to report; attendance is recorded and refreshed at least yearly.",
        source: CTPAT,
        section: "Security Training and Threat Awareness",
    },
    Requirement {
        id: "TR-2",
        category: Category::Training,
        level: Level::Should,
        title: "Security awareness is measured",
        explanation: "Drills or tests check that trained staff apply the procedures; results feed the next year's training.",
        source: SAFE,
        section: "Education, training and awareness",
    },
    Requirement {
        id: "CY-1",
        category: Category::Cybersecurity,
        level: Level::Must,
        title: "Systems that hold cargo data are protected",
        explanation: "Written cybersecurity policies cover individual accounts, strong passwords or multi-factor authentication, software updates, malware protection and backups.",
        source: CTPAT,
        section: "Cybersecurity",
    },
    Requirement {
        id: "CY-2",
        category: Category::Cybersecurity,
        level: Level::Should,
        title: "Cyber incidents are detected and tested for",
        explanation: "Systems are monitored for intrusions, vulnerabilities are scanned at least yearly, and a cyber incident response plan exists and is exercised.",
        source: CTPAT,
        section: "Cybersecurity",
    },
];
