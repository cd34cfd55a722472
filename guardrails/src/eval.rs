//! Scoring against a labelled set, the way the project scores (see `shared/data/README.md`): a gold
//! entity is caught when at least 80 % of its code points are covered by predicted spans of any type;
//! a predicted span that overlaps no gold entity is a false positive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, EntityType};

/// One labelled record (`{"id", "text", "entities"}`), as in `pii-dev.jsonl`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GoldRecord {
    /// Record id.
    pub id: String,
    /// The text.
    pub text: String,
    /// Gold entities (code-point offsets).
    pub entities: Vec<Entity>,
}

/// Recall of one entity type.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TypeRecall {
    /// Gold entities of this type.
    pub gold: usize,
    /// Of those, how many were caught.
    pub caught: usize,
    /// `caught / gold` (1.0 when there is no gold entity).
    pub recall: f64,
}

/// Scores over a whole set.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Scores {
    /// Recall per type string (`"PERSON"`, …).
    pub recall: BTreeMap<String, TypeRecall>,
    /// Recall over all structured identifiers together (every type but PERSON and ADDRESS).
    pub structured_recall: f64,
    /// Predicted spans.
    pub predicted: usize,
    /// Predicted spans overlapping no gold entity.
    pub false_positives: usize,
    /// `1 − false_positives / predicted`.
    pub precision: f64,
}

/// A gold entity that was missed or a prediction that matched nothing, for error analysis.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Miss {
    /// Record id.
    pub id: String,
    /// `"missed"` or `"false_positive"`.
    pub what: &'static str,
    /// The entity concerned.
    pub entity: Entity,
}

/// Scores predictions (`(gold, predicted)` per record); also returns the misses and false positives.
pub fn score<'a>(
    records: impl IntoIterator<Item = (&'a GoldRecord, &'a [Entity])>,
) -> (Scores, Vec<Miss>) {
    let mut s = Scores::default();
    for t in EntityType::ALL {
        s.recall
            .insert(t.as_str().to_string(), TypeRecall::default());
    }
    let mut misses = Vec::new();
    for (rec, pred) in records {
        for g in &rec.entities {
            let covered = (g.start..g.end)
                .filter(|&i| pred.iter().any(|p| p.start <= i && i < p.end))
                .count();
            let caught = !g.is_empty() && covered * 5 >= g.len() * 4;
            let r = s.recall.entry(g.kind.as_str().to_string()).or_default();
            r.gold += 1;
            if caught {
                r.caught += 1;
            } else {
                misses.push(Miss {
                    id: rec.id.clone(),
                    what: "missed",
                    entity: g.clone(),
                });
            }
        }
        for p in pred {
            s.predicted += 1;
            if !rec
                .entities
                .iter()
                .any(|g| p.start < g.end && g.start < p.end)
            {
                s.false_positives += 1;
                misses.push(Miss {
                    id: rec.id.clone(),
                    what: "false_positive",
                    entity: p.clone(),
                });
            }
        }
    }
    let (mut sg, mut sc) = (0, 0);
    for (t, r) in s.recall.iter_mut() {
        r.recall = if r.gold == 0 {
            1.0
        } else {
            r.caught as f64 / r.gold as f64
        };
        if EntityType::parse(t).is_some_and(EntityType::is_structured) {
            sg += r.gold;
            sc += r.caught;
        }
    }
    s.structured_recall = if sg == 0 { 1.0 } else { sc as f64 / sg as f64 };
    s.precision = if s.predicted == 0 {
        1.0
    } else {
        1.0 - s.false_positives as f64 / s.predicted as f64
    };
    (s, misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(kind: EntityType, start: usize, end: usize) -> Entity {
        Entity {
            kind,
            start,
            end,
            text: String::new(),
        }
    }

    #[test]
    fn eighty_percent_coverage_by_any_type_catches() {
        let rec = GoldRecord {
            id: "x".into(),
            text: String::new(),
            entities: vec![ent(EntityType::Person, 0, 5)],
        };
        let four = [ent(EntityType::Address, 0, 4)];
        let three = [
            ent(EntityType::Person, 0, 3),
            ent(EntityType::Phone, 20, 25),
        ];
        let (s, _) = score([(&rec, &four[..])]);
        assert_eq!(s.recall["PERSON"].caught, 1);
        assert_eq!(s.precision, 1.0);
        let (s, misses) = score([(&rec, &three[..])]);
        assert_eq!(s.recall["PERSON"].caught, 0);
        assert_eq!(s.false_positives, 1);
        assert_eq!(misses.len(), 2);
    }
}
