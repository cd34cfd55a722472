//! Shared test fixture: one detector per test binary, loaded from the dictionary that
//! `scripts/setup.sh` builds. A missing dictionary fails the tests with instructions (never skips).

use std::sync::OnceLock;

use anshin_guardrails::{Detector, Dictionary, EntityType};

pub fn detector() -> &'static Detector {
    static DET: OnceLock<Detector> = OnceLock::new();
    DET.get_or_init(|| match Dictionary::load_default() {
        Ok(d) => Detector::new(d),
        Err(e) => panic!(
            "{e}\n(the guardrails tests need the compiled IPADIC dictionary: run scripts/setup.sh)"
        ),
    })
}

/// `(type, text)` of every entity found in `input`.
#[allow(dead_code)]
pub fn found(input: &str) -> Vec<(EntityType, String)> {
    detector()
        .detect(input)
        .into_iter()
        .map(|e| (e.kind, e.text))
        .collect()
}

/// Texts of the entities of `kind` found in `input`.
#[allow(dead_code)]
pub fn found_of(input: &str, kind: EntityType) -> Vec<String> {
    found(input)
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, t)| t)
        .collect()
}
