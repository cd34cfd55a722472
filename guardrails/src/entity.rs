//! The entity types this crate detects and the spans it reports.

use serde::{Deserialize, Serialize};

/// A kind of personal information. Serialises as the exact upper-case strings used by the gateway,
/// the CLI and the data sets (`"PERSON"`, `"MY_NUMBER"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    /// A person's name (kanji, kana, half-width kana or romaji), without honorific.
    Person,
    /// A street-level address (prefecture or city down to house number, building and room).
    Address,
    /// A phone or fax number, including a `+81` prefix.
    Phone,
    /// An e-mail address.
    Email,
    /// A date of birth (the date expression only).
    BirthDate,
    /// The 12-digit individual number (個人番号, My Number).
    MyNumber,
    /// A health or long-term-care insurance identifier (保険者番号, 記号, 番号, 被保険者番号).
    InsuranceId,
    /// A patient, chart or consultation-card number (患者ID, カルテ番号, 診察券番号, MRN).
    PatientId,
    /// A 7-digit Japanese postal code (without the 〒 sign).
    PostalCode,
}

impl EntityType {
    /// Every type, in a fixed order.
    pub const ALL: [EntityType; 9] = [
        EntityType::Person,
        EntityType::Address,
        EntityType::Phone,
        EntityType::Email,
        EntityType::BirthDate,
        EntityType::MyNumber,
        EntityType::InsuranceId,
        EntityType::PatientId,
        EntityType::PostalCode,
    ];

    /// The exact type string (`"PERSON"`, `"BIRTH_DATE"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Person => "PERSON",
            EntityType::Address => "ADDRESS",
            EntityType::Phone => "PHONE",
            EntityType::Email => "EMAIL",
            EntityType::BirthDate => "BIRTH_DATE",
            EntityType::MyNumber => "MY_NUMBER",
            EntityType::InsuranceId => "INSURANCE_ID",
            EntityType::PatientId => "PATIENT_ID",
            EntityType::PostalCode => "POSTAL_CODE",
        }
    }

    /// Parses a type string as written by [`EntityType::as_str`].
    pub fn parse(s: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The Japanese label used inside placeholders, e.g. `氏名` in `〔氏名1〕`.
    pub fn placeholder_label(self) -> &'static str {
        match self {
            EntityType::Person => "氏名",
            EntityType::Address => "住所",
            EntityType::Phone => "電話",
            EntityType::Email => "メール",
            EntityType::BirthDate => "生年月日",
            EntityType::MyNumber => "個人番号",
            EntityType::InsuranceId => "保険番号",
            EntityType::PatientId => "患者番号",
            EntityType::PostalCode => "郵便番号",
        }
    }

    /// Whether the type is a structured identifier (found by rules and checksums rather than by the
    /// morphological analyser). PERSON and ADDRESS are not.
    pub fn is_structured(self) -> bool {
        !matches!(self, EntityType::Person | EntityType::Address)
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detected span. Offsets are Unicode code points (Python `str` indices), `end` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entity {
    /// What kind of information this is.
    #[serde(rename = "type")]
    pub kind: EntityType,
    /// First code point of the span.
    pub start: usize,
    /// One past the last code point of the span.
    pub end: usize,
    /// The span's text exactly as it appears in the input.
    pub text: String,
}

impl Entity {
    /// Number of code points covered.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty (never the case for detected entities).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A candidate span before overlap resolution (code-point offsets into the normalised text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub kind: EntityType,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(kind: EntityType, start: usize, end: usize) -> Span {
        Span { kind, start, end }
    }
}
