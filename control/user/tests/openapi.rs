//! The user service's OpenAPI document describes every route it serves.

#[test]
fn every_route_is_documented() {
    let document = buildstream_user::openapi();
    let missing =
        buildstream_service::openapi::undocumented(&document, &[include_str!("../src/lib.rs")]);
    assert!(
        missing.is_empty(),
        "not in the OpenAPI document: {missing:?}"
    );
    let json = serde_json::to_value(&document).unwrap();
    assert_eq!(json["openapi"], "3.1.0");
    for schema in ["Registration", "UserView", "Tokens", "ErrorBody"] {
        assert!(
            json["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
    assert_eq!(
        json["paths"]["/api/v1/users/me"]["get"]["security"][0]["user"],
        serde_json::json!([])
    );
}
