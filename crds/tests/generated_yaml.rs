//! The committed CRD YAML must be exactly what the code generates.

use std::path::Path;

use anshin_crds::crdgen::{generated_files, run};

fn yaml_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/yaml"))
}

#[test]
fn committed_crd_yaml_matches_the_code() {
    if let Err(e) = run(yaml_dir(), true) {
        panic!("{e}");
    }
}

#[test]
fn there_is_one_file_per_kind_and_nothing_else() {
    let generated: Vec<String> = generated_files(yaml_dir())
        .expect("CRDs serialize")
        .into_iter()
        .map(|(path, _)| {
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(generated.len(), 5);
    let mut committed: Vec<String> = std::fs::read_dir(yaml_dir())
        .expect("crds/yaml exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    committed.sort();
    let mut expected = generated.clone();
    expected.sort();
    assert_eq!(
        committed, expected,
        "crds/yaml holds a file that crdgen does not write"
    );
}

#[test]
fn drift_is_detected() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(dir.path(), false).expect("writes");
    run(dir.path(), true).expect("fresh files are up to date");
    let file = dir.path().join("tenant.yaml");
    let edited = std::fs::read_to_string(&file)
        .expect("read")
        .replace("Tenant", "Tenantt");
    std::fs::write(&file, edited).expect("write");
    let err = run(dir.path(), true).expect_err("an edited file is drift");
    assert!(err.to_string().contains("tenant.yaml"), "{err}");
}
