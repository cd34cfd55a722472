//! Japanese PII guardrails for Anshin: detection, redaction with typed placeholders, restoration,
//! leak reporting and a streaming scanner. A pure library — no network, no Kubernetes.
//!
//! Data flow for one gateway request:
//! 1. [`Detector::detect`] normalises the text (full-width → ASCII, dash variants → `-`, one char per
//!    char so offsets stay valid), runs rules for structured identifiers, runs the vibrato analyser
//!    with IPADIC for names and addresses, and resolves overlaps.
//! 2. [`Detector::redact`] replaces entities with numbered placeholders (`〔氏名1〕`) and returns the
//!    [`Mapping`] that belongs to this request only.
//! 3. The model's answer goes through [`Detector::check_output`] (whole answer) or an
//!    [`OutputGuard`] (streamed chunks): this request's placeholders are restored for the authorised
//!    caller, and PII the model produced on its own is redacted and reported as a leak.
//!
//! The dictionary is compiled once by `scripts/setup.sh` (see `docs/guardrails.md`) and loaded with
//! [`Dictionary::load_default`].

#![warn(missing_docs)]

mod address;
pub mod bench;
mod dates;
mod detector;
mod dict;
mod entity;
mod error;
pub mod eval;
mod morph;
mod mynumber;
mod names;
mod redact;
mod romaji;
mod rules;
mod stream;
mod text;
mod words;

pub mod cli;

pub use detector::Detector;
pub use dict::{DICT_ENV, Dictionary, ROMAJI_NAMES, SYSTEM_DIC};
pub use entity::{Entity, EntityType};
pub use error::{Error, Result};
pub use mynumber::{check_digit as my_number_check_digit, is_valid_my_number};
pub use redact::{Mapping, MappingEntry, OutputReport, Redaction, restore};
pub use stream::{OutputChunk, OutputGuard, Released, StreamScanner};
