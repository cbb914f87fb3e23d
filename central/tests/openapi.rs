//! The OpenAPI document served at `/api/v1/openapi.json` describes exactly the API the
//! router serves: every `/api/…` route (and `/healthz`, `/metrics`) with its methods is in
//! the document, and the document names no route that does not exist.

use std::collections::BTreeSet;

/// `(method, path)` pairs of the JSON API routes in central/src/api.rs.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api.rs"))
        .expect("api.rs");
    let mut out = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(q1) = rest.find('"') else { break };
        let after = &rest[q1 + 1..];
        let Some(q2) = after.find('"') else { break };
        let path = &after[..q2];
        let tail = &after[q2 + 1..];
        let end = tail
            .find(".route(")
            .unwrap_or(tail.len())
            .min(tail.find(".layer(").unwrap_or(tail.len()));
        let handlers = &tail[..end];
        for method in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}

fn routes_in_document() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(central::api::OPENAPI).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let source = routes_in_source();
    assert!(
        source.len() >= 20,
        "found only {} routes: is the source parser still right?",
        source.len()
    );
    let document = routes_in_document();
    let missing: Vec<_> = source.difference(&document).collect();
    let extra: Vec<_> = document.difference(&source).collect();
    assert!(
        missing.is_empty(),
        "routes missing from central/openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "central/openapi.json names routes the router does not serve: {extra:?}"
    );
}

#[test]
fn every_reference_in_the_document_resolves() {
    let text = central::api::OPENAPI;
    let doc: serde_json::Value = serde_json::from_str(text).expect("json");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut rest = text;
    let mut n = 0;
    while let Some(i) = rest.find("#/components/schemas/") {
        rest = &rest[i + "#/components/schemas/".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(schemas.contains_key(&name), "unresolved $ref to {name}");
        n += 1;
    }
    assert!(n > 10);
}
