//! The shared language of aeogate.
//!
//! # Layout
//! - [`container`]: ISO 6346 container numbers.
//! - [`epc`]: GS1 EPC binary (96-bit) decoding and encoding.
//! - [`seal`]: ISO 17712 seal markings and ISO 18185 e-seal identities.
//! - [`operator`]: trader / AEO identifiers with programme and issuing country.
//! - [`link`]: the serial link between lane I/O board and edge agent.
//! - [`reader`]: wire formats of reader modules (the `BB … 7E` UHF module, the e-seal reader).
//! - [`llrp`] (feature `alloc`): the LLRP 1.1 message codec of fixed network UHF readers.
//! - [`schema`] (feature `std`): versioned event and registry schemas.
//! - [`registry`] (feature `std`): how a registry change is applied ([`schema::Change::apply`]),
//!   the one rule for central and every replica.
//! - [`i18n`] (feature `std`): the screens' languages and reason texts in each.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod text;

pub mod container;
pub mod epc;
#[cfg(feature = "std")]
pub mod i18n;
pub mod link;
#[cfg(feature = "alloc")]
pub mod llrp;
pub mod operator;
pub mod reader;
#[cfg(feature = "std")]
pub mod registry;
#[cfg(feature = "std")]
pub mod schema;
pub mod seal;
