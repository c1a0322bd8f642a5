use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::spawn;

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_string());
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let served: BTreeSet<(String, String)> = hubgate_control_plane::app::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_lowercase(), p.to_string()))
        .collect();
    assert!(served.len() > 30);

    let app = spawn().await;
    let (status, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path}");
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(documented, served, "OpenAPI document and router disagree");

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling {r}"
        );
    }
    // The credential is documented as write-only and never in outputs.
    assert_eq!(
        doc["components"]["schemas"]["ProviderInput"]["properties"]["api_key"]["writeOnly"],
        true
    );
    assert!(doc["components"]["schemas"]["Provider"]["properties"]
        .get("api_key")
        .is_none());
}
