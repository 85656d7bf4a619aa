//! The committed OpenAPI document is the one the code generates, and it covers every route.

use serde_json::Value;
use tastysync_shared::api::{ROUTES, openapi_json};

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap()
}

#[test]
fn the_committed_openapi_document_is_current() {
    assert!(
        committed() == openapi_json(),
        "openapi.json is stale: run `make openapi` and commit it"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_every_route_and_their_error_shapes() {
    let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for route in ROUTES {
        let (path, method) = (route.path, route.method.to_lowercase());
        let operation = &paths[path][&method];
        assert!(operation.is_object(), "{method} {path} is missing");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path} documents no 401"
        );
    }
    assert!(doc["components"]["securitySchemes"]["jwt"].is_object());
}

#[test]
fn the_deployed_routes_are_exactly_the_documented_operations() {
    let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let mut routed: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
}
