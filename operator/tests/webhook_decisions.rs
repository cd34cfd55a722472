//! The webhook's verdicts on the project's own example and rejected-fixture YAML.

mod support;

use anshin_operator::policy::HostPathPolicy;
use anshin_operator::webhook::tls::self_signed;
use anshin_operator::webhook::{Reference, validate};
use serde_json::Value;

fn load(path: &str) -> Vec<Value> {
    let full = format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text)
        .unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn verdict(path: &str, reference: Reference) -> Vec<String> {
    let docs = load(path);
    let (old, new) = match docs.as_slice() {
        [new] => (None, new),
        [old, new] => (Some(old), new),
        _ => panic!("{path}: one or two documents"),
    };
    validate(
        new["kind"].as_str().unwrap_or_default(),
        new,
        old,
        reference,
        &HostPathPolicy::default(),
    )
}

#[test]
fn valid_examples_are_admitted() {
    for path in [
        "tenant.yaml",
        "modelversion.yaml",
        "trainingjob.yaml",
        "inferenceendpoint.yaml",
        "globalendpoint.yaml",
    ] {
        assert_eq!(
            verdict(path, Reference::NotApplicable),
            Vec::<String>::new(),
            "{path}"
        );
    }
}

#[test]
fn cel_rules_are_enforced_with_their_messages() {
    let cases = [
        (
            "rejected/ie-min-greater-than-max.yaml",
            "replicas.min must be less than or equal to replicas.max",
        ),
        (
            "rejected/ie-canary-weights-decreasing.yaml",
            "weights must strictly increase",
        ),
        (
            "rejected/ie-canary-without-steps.yaml",
            "Canary needs at least one entry",
        ),
        ("rejected/mv-missing-base.yaml", "lineage.base is required"),
        (
            "rejected/mv-spec-edited.yaml",
            "ModelVersion spec is immutable",
        ),
        (
            "rejected/tj-missing-base-model.yaml",
            "spec.baseModel is required",
        ),
        ("rejected/ge-duplicate-region.yaml", "same name"),
        ("rejected/tn-duplicate-key.yaml", "same name"),
        (
            "rejected/ie-zero-max-surge.yaml",
            "rollout.maxSurge must be at least 1",
        ),
    ];
    for (path, message) in cases {
        let found = verdict(path, Reference::NotApplicable);
        assert!(
            found.iter().any(|m| m.contains(message)),
            "{path}: expected {message:?}, got {found:?}"
        );
    }
}

#[test]
fn an_endpoint_naming_a_missing_model_version_is_refused() {
    let found = verdict("inferenceendpoint.yaml", Reference::Missing);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("med-ja-v2-sft") && found[0].contains("does not exist"),
        "{found:?}"
    );
}

fn host_path_verdict(uri: &str, old_uri: Option<&str>, allowed: &[&str]) -> Vec<String> {
    let mut mv: Value = support::fixture("mv-gguf-file.yaml");
    let old = old_uri.map(|u| {
        let mut o = mv.clone();
        o["spec"]["artifact"]["uri"] = u.into();
        o
    });
    mv["spec"]["artifact"]["uri"] = uri.into();
    let policy = HostPathPolicy::new(allowed).expect("clean prefixes");
    validate(
        "ModelVersion",
        &mv,
        old.as_ref(),
        Reference::NotApplicable,
        &policy,
    )
}

#[test]
fn a_host_path_artifact_is_refused_unless_under_an_allowed_prefix() {
    let uri = "file:///var/lib/anshin/models/smollm2";
    let found = host_path_verdict(uri, None, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    for hint in [
        "spec.artifact.uri",
        "allowed: none",
        "pvc://",
        "--allow-host-path",
    ] {
        assert!(found[0].contains(hint), "{hint}: {found:?}");
    }
    assert_eq!(
        host_path_verdict(uri, None, &["/var/lib/anshin/models"]),
        Vec::<String>::new()
    );
    assert_eq!(
        host_path_verdict(uri, None, &["/var/lib/anshin/model", "/srv"]).len(),
        1,
        "prefixes match whole path segments"
    );
    let escape = "file:///var/lib/anshin/models/../../../etc";
    let found = host_path_verdict(escape, None, &["/var/lib/anshin/models"]);
    assert!(found.iter().any(|m| m.contains("`..`")), "{found:?}");
}

#[test]
fn an_existing_host_path_version_stays_editable_when_the_prefixes_change() {
    let uri = "file:///var/lib/anshin/models/smollm2";
    assert_eq!(
        host_path_verdict(uri, Some(uri), &[]),
        Vec::<String>::new(),
        "labels of a stored version can still change"
    );
}

#[test]
fn self_signed_certificates_load_into_rustls() {
    let certs = self_signed(&["127.0.0.1".into()]).expect("certs");
    assert!(certs.ca_pem.contains("BEGIN CERTIFICATE") && certs.key_pem.contains("PRIVATE KEY"));
    anshin_operator::webhook::tls::server_config(&certs.cert_pem, &certs.key_pem)
        .expect("rustls accepts them");
}
