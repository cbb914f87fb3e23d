//! The demo's traffic: which truck comes to which lane, and what the lane hardware and
//! the OCR portal will see of it.
//!
//! A visit is planned from a consignment of the data set (or, for a share of trucks, from
//! no consignment at all: missing advance data). The plan says what the RFID reader, the
//! e-seal reader and the OCR portal report, including the deliberate faults of each
//! scenario: a seal number that differs from the declaration, a tampered e-seal, OCR and
//! RFID disagreeing on the container number.

use std::time::Duration;

use protocol::container::ContainerNumber;
use protocol::epc::Giai96;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
use protocol::schema::Consignment;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::{DataSet, Scenario};

/// What one truck shows at a lane.
#[derive(Debug, Clone)]
pub struct Visit {
    /// What the visit is meant to show; `None` for an undeclared container.
    pub scenario: Option<Scenario>,
    /// EPC banks the UHF reader sees: the tractor's GIAI-96 and, on most trucks, the
    /// container's ISO 6346 tag.
    pub tags: Vec<Vec<u8>>,
    /// E-seals the e-seal reader sees.
    pub eseals: Vec<SealRead>,
    /// Container numbers the OCR portal reports (text as the portal sends it).
    pub ocr_containers: Vec<String>,
    /// Mechanical seal numbers the seal camera reports.
    pub ocr_seals: Vec<String>,
    /// How long the truck stays on the loop.
    pub dwell: Duration,
}

/// Plans visits, deterministically from a seed.
#[derive(Debug)]
pub struct Traffic {
    rng: StdRng,
    next_tractor: u64,
}

/// A container tag as terminal tools write them: the ISO 6346 number in ASCII, padded to a
/// 96-bit EPC bank.
fn container_tag(c: &ContainerNumber) -> Vec<u8> {
    let mut epc = c.as_str().as_bytes().to_vec();
    epc.push(0);
    epc
}

/// A seal marking that differs from `declared` in one digit (what a swapped seal looks
/// like on paper).
fn altered_seal(rng: &mut StdRng, declared: &str) -> String {
    let mut chars: Vec<char> = declared.chars().collect();
    let digit_positions: Vec<usize> = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    if let Some(&i) = digit_positions.get(rng.random_range(0..digit_positions.len().max(1))) {
        let d = chars[i].to_digit(10).unwrap_or(0);
        chars[i] = char::from_digit((d + rng.random_range(1..10)) % 10, 10).unwrap_or('0');
    }
    chars.into_iter().collect()
}

impl Traffic {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x7a11_c0de),
            next_tractor: 1,
        }
    }

    fn tractor_tag(&mut self) -> Vec<u8> {
        self.next_tractor += 1;
        // A GIAI-96 under company prefix 0614141 (the TDS examples' prefix), partition 5.
        Giai96::new(0, 5, 614_141, self.next_tractor)
            .map(|g| g.to_bytes().to_vec())
            .unwrap_or_default()
    }

    /// Plans the next visit. `undeclared_share` of trucks bring a container nobody
    /// declared.
    pub fn next_visit(&mut self, data: &DataSet, undeclared_share: f64) -> Visit {
        let dwell = Duration::from_millis(self.rng.random_range(3_000..6_000));
        let tractor = self.tractor_tag();
        if data.consignments.is_empty() || self.rng.random_bool(undeclared_share) {
            let c = super::data::undeclared_container(&mut self.rng);
            return Visit {
                scenario: None,
                tags: [Some(tractor), c.as_ref().map(container_tag)]
                    .into_iter()
                    .flatten()
                    .collect(),
                eseals: vec![],
                ocr_containers: c.iter().map(|c| c.as_str().to_owned()).collect(),
                ocr_seals: vec![],
                dwell,
            };
        }
        let index = self.rng.random_range(0..data.consignments.len());
        let planned = &data.consignments[index];
        let c: &Consignment = &planned.consignment;
        let scenario = planned.scenario;
        let mut visit = Visit {
            scenario: Some(scenario),
            tags: vec![tractor],
            eseals: vec![],
            ocr_containers: vec![],
            ocr_seals: vec![],
            dwell,
        };
        for (k, dc) in c.containers.iter().enumerate() {
            // Most containers carry a tag; the OCR portal reads every one.
            if self.rng.random_bool(0.7) || scenario == Scenario::ReadConflict {
                visit.tags.push(container_tag(&dc.number));
            }
            let ocr = if scenario == Scenario::ReadConflict && k == 0 {
                ContainerNumber::from_parts(
                    dc.number.owner(),
                    'U',
                    (dc.number.serial().parse::<u32>().unwrap_or(0) + 17) % 1_000_000,
                )
                .map_or_else(|_| dc.number.as_str().to_owned(), |n| n.as_str().to_owned())
            } else if self.rng.random_bool(0.2) {
                // Portals send what they see: spaces and lower case happen.
                format!(
                    "{} {} {}",
                    dc.number.owner().to_lowercase() + "u",
                    dc.number.serial(),
                    dc.number.check_digit()
                )
            } else {
                dc.number.as_str().to_owned()
            };
            visit.ocr_containers.push(ocr);
            for s in &dc.seals {
                if scenario == Scenario::SealMismatch && k == 0 {
                    visit
                        .ocr_seals
                        .push(altered_seal(&mut self.rng, s.as_str()));
                } else {
                    visit.ocr_seals.push(s.as_str().to_owned());
                }
            }
            for e in &dc.eseals {
                let tampered = scenario == Scenario::ESealTampered;
                visit.eseals.push(SealRead {
                    manufacturer: e.manufacturer(),
                    tag_id: e.tag_id(),
                    status: if tampered {
                        SealStatus::Tampered
                    } else {
                        SealStatus::Sealed
                    },
                    battery: if self.rng.random_bool(0.05) {
                        BatteryLevel::Low
                    } else {
                        BatteryLevel::Ok
                    },
                    sealed_at: Some(EpochMinutes(29_000_000)),
                    opened_at: if tampered {
                        Some(EpochMinutes(29_300_000))
                    } else {
                        None
                    },
                });
            }
        }
        visit
    }
}
