//! The generated schemas say what `kubectl explain` and `kubectl get` need.

use anshin_crds::all_crds;
use anshin_crds::schema_check::schema_of;
use serde_json::Value;

/// Every property below `value` without a description, as dotted paths.
fn undocumented(value: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = value.get("properties").and_then(Value::as_object) {
        for (name, field) in properties {
            let field_path = format!("{path}.{name}");
            let described = field
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                out.push(field_path.clone());
            }
            undocumented(field, &field_path, out);
        }
    }
    if let Some(items) = value.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(values) = value.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(values, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_spec_and_status_field_has_a_description() {
    let mut missing = Vec::new();
    for (stem, crd) in all_crds() {
        let schema = schema_of(&crd).expect("schema");
        for part in ["spec", "status"] {
            let sub = &schema["properties"][part];
            assert!(sub.is_object(), "{stem} has no {part}");
            undocumented(sub, &format!("{stem}.{part}"), &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

#[test]
fn the_walk_finds_an_undocumented_field() {
    let schema =
        serde_json::json!({"properties": {"a": {"description": "x", "properties": {"b": {}}}}});
    let mut missing = Vec::new();
    undocumented(&schema, "spec", &mut missing);
    assert_eq!(missing, vec!["spec.a.b".to_owned()]);
}

#[test]
fn kinds_have_short_names_category_and_status_subresource() {
    let expected = [
        ("modelversion", "ModelVersion", "mv"),
        ("trainingjob", "TrainingJob", "tj"),
        ("inferenceendpoint", "InferenceEndpoint", "ie"),
        ("globalendpoint", "GlobalEndpoint", "ge"),
        ("tenant", "Tenant", "tn"),
    ];
    for ((stem, crd), (want_stem, kind, short)) in all_crds().into_iter().zip(expected) {
        assert_eq!(stem, want_stem);
        assert_eq!(crd.spec.group, "anshin.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["anshin".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(
            subresources.status.is_some(),
            "{kind} has a status subresource"
        );
        assert_eq!(
            subresources.scale.is_some(),
            kind == "InferenceEndpoint",
            "{kind} scale subresource"
        );
    }
}

#[test]
fn inference_endpoint_columns_are_what_an_sre_reads() {
    let (_, crd) = all_crds()
        .into_iter()
        .find(|(s, _)| *s == "inferenceendpoint")
        .expect("ie");
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.to_uppercase())
        .collect();
    assert_eq!(
        columns,
        [
            "MODEL", "STABLE", "CANARY", "WEIGHT", "READY", "PHASE", "AGE"
        ]
    );
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas.desired");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn every_printer_column_points_at_a_schema_field() {
    for (stem, crd) in all_crds() {
        let schema = schema_of(&crd).expect("schema");
        for column in crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
        {
            if column.json_path.starts_with(".metadata.") {
                continue;
            }
            let mut node = &schema;
            for part in column.json_path.trim_start_matches('.').split('.') {
                node = &node["properties"][part];
            }
            assert!(
                node.is_object(),
                "{stem}: column {} points at {} which is not in the schema",
                column.name,
                column.json_path
            );
        }
    }
}

#[test]
fn user_facing_defaults_are_in_the_schema() {
    let find = |stem: &str| {
        schema_of(
            &all_crds()
                .into_iter()
                .find(|(s, _)| *s == stem)
                .expect("kind")
                .1,
        )
        .expect("schema")
    };
    let ie = find("inferenceendpoint");
    assert_eq!(
        ie["properties"]["spec"]["properties"]["replicas"]["properties"]["min"]["default"],
        1
    );
    let tj = find("trainingjob");
    let resources = &tj["properties"]["spec"]["properties"]["resources"]["properties"];
    assert_eq!(resources["gpuProduct"]["default"], "NVIDIA-H100-80GB-HBM3");
    assert_eq!(resources["gpusPerNode"]["default"], 8);
    let ge = find("globalendpoint");
    let health = &ge["properties"]["spec"]["properties"]["healthCheck"]["properties"];
    assert_eq!(health["intervalSeconds"]["default"], 5);
    assert_eq!(health["failureThreshold"]["default"], 3);
}
