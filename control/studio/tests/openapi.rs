//! The studio service's OpenAPI document describes every route it serves,
//! with the schemas its bodies use.

#[test]
fn every_route_is_documented() {
    let document = buildstream_studio::openapi();
    let missing = buildstream_service::openapi::undocumented(
        &document,
        &[
            include_str!("../src/api.rs"),
            include_str!("../src/room.rs"),
            include_str!("../src/search.rs"),
            include_str!("../src/lib.rs"),
        ],
    );
    assert!(
        missing.is_empty(),
        "not in the OpenAPI document: {missing:?}"
    );
    let json = serde_json::to_value(&document).unwrap();
    for schema in [
        "StudioView",
        "Scene",
        "Layout",
        "BroadcastView",
        "SearchPage",
        "StudioDoc",
        "NodeInfo",
        "ErrorBody",
    ] {
        assert!(
            json["components"]["schemas"].get(schema).is_some(),
            "{schema} missing from {}",
            json["components"]["schemas"]
        );
    }
    let search = &json["paths"]["/api/v1/search/studios"]["get"];
    let params: Vec<&str> = search["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "q",
        "live",
        "tags",
        "created_after",
        "sort",
        "page",
        "per_page",
    ] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    assert_eq!(
        json["paths"]["/internal/v1/nodes/{id}"]["put"]["security"][0]["node"],
        serde_json::json!([])
    );
}
