//! Checks an object against a CRD's generated schema without an API server.
//!
//! The API server applies an object's schema defaults, then its OpenAPI structure (types, enums,
//! patterns, bounds), then its CEL `x-kubernetes-validations` rules (on servers that run CEL). This module
//! does the same, in that order, so that tests can show which fixtures a server would reject and so that
//! the operator's admission webhook can enforce the CEL rules on servers too old to run them. CEL
//! evaluation is kube's `cel` feature (the `kube-cel` crate, which carries the Kubernetes CEL
//! extension libraries such as `isSorted`). The structural part covers the subset of OpenAPI v3 that
//! Anshin's schemas use.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{Validator, apply_defaults};
use serde_json::{Map, Value};

/// One reason an object is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path of the offending field, e.g. `spec.replicas.min`.
    pub path: String,
    /// What is wrong, in the words the API server or the rule's message uses.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The `openAPIV3Schema` of the CRD's first version as JSON, if it has one.
pub fn schema_of(crd: &CustomResourceDefinition) -> Option<Value> {
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

/// Every violation of `object` against the CRD's schema, after applying the schema's defaults.
///
/// `old` is the object before an update; with it, transition rules (those using `oldSelf`) run too.
/// An empty result means a server running CEL would accept the object.
pub fn check(
    crd: &CustomResourceDefinition,
    object: &Value,
    old: Option<&Value>,
) -> Vec<Violation> {
    let Some(schema) = schema_of(crd) else {
        return vec![Violation {
            path: String::new(),
            message: "the CRD has no openAPIV3Schema".into(),
        }];
    };
    let defaulted = apply_defaults(&schema, object);
    let mut violations = Vec::new();
    check_structure(&schema, &defaulted, "", &mut violations);
    violations.extend(check_cel(&schema, &defaulted, old));
    violations
}

/// Only the CEL rules of the schema (what the admission webhook enforces on servers without CEL).
pub fn check_cel(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<Violation> {
    let old = old.map(|o| apply_defaults(schema, o));
    match Validator::new().validate(schema, object, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| Violation {
                path: e.field_path.clone(),
                message: e.message.clone(),
            })
            .collect(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The API server knows these root fields of every object whatever the CRD schema says.
fn is_object_meta_field(path: &str, name: &str) -> bool {
    path.is_empty() && matches!(name, "apiVersion" | "kind" | "metadata")
}

fn check_structure(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let mut fail = |message: String| {
        out.push(Violation {
            path: path.to_owned(),
            message,
        })
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            fail("must not be null".into());
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            fail(format!(
                "Invalid value: {value}: must be an integer or a string"
            ));
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !type_matches(ty, value)
    {
        fail(format!("Invalid value: {value}: must be of type {ty}"));
        return;
    }
    check_enum(schema, value, &mut fail);
    match value {
        Value::String(s) => check_string(schema, s, &mut fail),
        Value::Number(_) => check_number(schema, value, &mut fail),
        Value::Array(items) => check_array(schema, items, path, out),
        Value::Object(fields) => check_object(schema, fields, path, out),
        _ => {}
    }
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn check_enum(schema: &Value, value: &Value, fail: &mut impl FnMut(String)) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        fail(format!(
            "Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
}

fn check_string(schema: &Value, s: &str, fail: &mut impl FnMut(String)) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        fail(format!(
            "Invalid value: {s:?}: should be at least {min} chars long"
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        fail(format!("Too long: may not be longer than {max}"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => fail(format!("Invalid value: {s:?}: should match '{pattern}'")),
            Err(e) => fail(format!(
                "the schema pattern '{pattern}' does not compile: {e}"
            )),
        }
    }
}

fn check_number(schema: &Value, value: &Value, fail: &mut impl FnMut(String)) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        fail(format!(
            "Invalid value: {value}: should be greater than or equal to {min}"
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        fail(format!(
            "Invalid value: {value}: should be less than or equal to {max}"
        ));
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, out: &mut Vec<Violation>) {
    let len = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        out.push(Violation {
            path: path.to_owned(),
            message: format!("should have at least {min} items"),
        });
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        out.push(Violation {
            path: path.to_owned(),
            message: format!("Too many: {len}: must have at most {max} items"),
        });
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check_structure(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
}

fn check_object(schema: &Value, fields: &Map<String, Value>, path: &str, out: &mut Vec<Violation>) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = name.as_str()
            && !fields.contains_key(name)
        {
            out.push(Violation {
                path: join(path, name),
                message: "Required value".into(),
            });
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (name, value) in fields {
        let field_path = join(path, name);
        if let Some(field_schema) = properties.and_then(|p| p.get(name)) {
            check_structure(field_schema, value, &field_path, out);
        } else if let Some(value_schema) = additional.filter(|a| a.is_object()) {
            check_structure(value_schema, value, &field_path, out);
        } else if properties.is_some() && !preserve && !is_object_meta_field(path, name) {
            // The API server prunes unknown fields silently; a fixture or user most likely made a typo.
            out.push(Violation {
                path: field_path,
                message: "unknown field".into(),
            });
        }
    }
}
