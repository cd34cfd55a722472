//! The examples parse into the Rust types and pass the schema; each rejected fixture fails with its message.
//!
//! A rejected fixture names the message it must fail with in its `anshin.dev/expect-rejection`
//! annotation. A fixture with two documents is an update: the first is the stored object, the second
//! the edit (for transition rules such as ModelVersion immutability).

use std::path::{Path, PathBuf};

use anshin_crds::schema_check::{Violation, check};
use anshin_crds::{GlobalEndpoint, InferenceEndpoint, ModelVersion, Tenant, TrainingJob, all_crds};
use serde_json::Value;

const EXPECT: &str = "anshin.dev/expect-rejection";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn violations(doc: &Value, old: Option<&Value>) -> Vec<Violation> {
    let kind = doc["kind"].as_str().expect("kind");
    let (_, crd) = all_crds()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    check(&crd, doc, old)
}

/// Deserializes a document into the Rust type of its kind (what the operator will do).
fn parse_typed(doc: &Value) -> Result<(), serde_json::Error> {
    let doc = doc.clone();
    match doc["kind"].as_str() {
        Some("ModelVersion") => serde_json::from_value::<ModelVersion>(doc).map(drop),
        Some("TrainingJob") => serde_json::from_value::<TrainingJob>(doc).map(drop),
        Some("InferenceEndpoint") => serde_json::from_value::<InferenceEndpoint>(doc).map(drop),
        Some("GlobalEndpoint") => serde_json::from_value::<GlobalEndpoint>(doc).map(drop),
        Some("Tenant") => serde_json::from_value::<Tenant>(doc).map(drop),
        other => panic!("unexpected kind {other:?}"),
    }
}

#[test]
fn there_is_one_example_per_kind() {
    let kinds: Vec<String> = yaml_files(&examples_dir())
        .iter()
        .flat_map(|p| documents(p))
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for (_, crd) in all_crds() {
        let n = kinds.iter().filter(|k| **k == crd.spec.names.kind).count();
        assert_eq!(
            n, 1,
            "examples/ should hold exactly one {}",
            crd.spec.names.kind
        );
    }
}

#[test]
fn every_example_parses_and_passes_the_schema() {
    for path in yaml_files(&examples_dir()) {
        for doc in documents(&path) {
            if let Err(e) = parse_typed(&doc) {
                panic!("{} does not parse into its Rust type: {e}", path.display());
            }
            let found = violations(&doc, None);
            assert!(
                found.is_empty(),
                "{} is rejected: {found:?}",
                path.display()
            );
        }
    }
}

#[test]
fn examples_keep_what_they_promise() {
    let load = |name: &str| documents(&examples_dir().join(name)).remove(0);
    let tj: TrainingJob = serde_json::from_value(load("trainingjob.yaml")).expect("tj");
    assert_eq!(
        (tj.spec.resources.nodes, tj.spec.resources.gpus_per_node),
        (2, 8)
    );
    assert_eq!(tj.spec.resources.gpu_product, "NVIDIA-H100-80GB-HBM3");
    let ie: InferenceEndpoint = serde_json::from_value(load("inferenceendpoint.yaml")).expect("ie");
    assert_eq!((ie.spec.replicas.min, ie.spec.replicas.max), (2, Some(8)));
    assert_eq!(
        ie.spec.rollout.strategy,
        anshin_crds::inference_endpoint::RolloutStrategy::BlueGreen
    );
    let ge: GlobalEndpoint = serde_json::from_value(load("globalendpoint.yaml")).expect("ge");
    assert_eq!(ge.spec.regions.len(), 2);
    let mv: ModelVersion = serde_json::from_value(load("modelversion.yaml")).expect("mv");
    assert!(mv.spec.artifact.files.len() >= 2);
}

#[test]
fn every_rejected_fixture_fails_with_its_message() {
    let fixtures = yaml_files(&examples_dir().join("rejected"));
    assert!(
        fixtures.len() >= 15,
        "expected the rejected fixtures, found {}",
        fixtures.len()
    );
    for path in fixtures {
        let docs = documents(&path);
        let (old, new) = match docs.as_slice() {
            [new] => (None, new),
            [old, new] => {
                assert!(
                    violations(old, None).is_empty(),
                    "{}: the stored object must be valid",
                    path.display()
                );
                (Some(old), new)
            }
            _ => panic!("{}: expected one or two documents", path.display()),
        };
        let expected = new["metadata"]["annotations"][EXPECT]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {EXPECT} annotation", path.display()));
        let found = violations(new, old);
        assert!(
            found.iter().any(|v| v.message.contains(expected)),
            "{}: expected a rejection containing {expected:?}, got {found:?}",
            path.display()
        );
    }
}

#[test]
fn the_same_spec_may_be_applied_again() {
    let doc = documents(&examples_dir().join("modelversion.yaml")).remove(0);
    assert!(
        violations(&doc, Some(&doc)).is_empty(),
        "re-applying an unchanged ModelVersion is allowed"
    );
}

#[test]
fn typed_defaults_match_schema_defaults() {
    let doc: Value = serde_json::json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint",
        "metadata": {"name": "minimal"}, "spec": {"modelVersion": "med-ja-v2-sft"}
    });
    let ie: InferenceEndpoint =
        serde_json::from_value(doc.clone()).expect("minimal endpoint parses");
    assert_eq!(ie.spec.replicas.min, 1);
    assert_eq!(ie.spec.runtime.drain_timeout_seconds, 30);
    let (_, crd) = all_crds()
        .into_iter()
        .find(|(s, _)| *s == "inferenceendpoint")
        .expect("ie");
    let schema = anshin_crds::schema_check::schema_of(&crd).expect("schema");
    let defaulted = kube::core::cel::apply_defaults(&schema, &doc);
    let from_schema: InferenceEndpoint =
        serde_json::from_value(defaulted).expect("defaulted parses");
    assert_eq!(
        from_schema.spec, ie.spec,
        "the API server's defaults and the Rust defaults agree"
    );
}
