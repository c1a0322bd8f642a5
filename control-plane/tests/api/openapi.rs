//! The OpenAPI document against what the admin listener really serves: its
//! routes and their access, and the answers of real requests.

use std::collections::{BTreeMap, BTreeSet};

use hubgate_control_plane::app::{route_table, Access};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{event, ingest, spawn, TestApp, ADMIN_TOKEN};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

/// Every operation of the document by (method, path), method in lower case.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            out.insert((method.clone(), path.clone()), operation);
        }
    }
    out
}

/// Who the operation's `security` admits.
fn documented_access(operation: &Value) -> Access {
    let alternatives: Vec<Vec<&str>> = operation["security"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| r.as_object().unwrap().keys().map(|k| k.as_str()).collect())
                .collect()
        })
        .unwrap_or_default();
    match alternatives.as_slice() {
        [] => Access::Public,
        [session] if session == &["uiSession"] => Access::Console,
        [admin, session] if admin == &["adminBearer"] && session == &["uiSession"] => Access::Admin,
        [admin, user, session]
            if admin == &["adminBearer"]
                && user == &["userBearer"]
                && session == &["uiSession"] =>
        {
            Access::Account
        }
        other => panic!("unexpected security {other:?}"),
    }
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap());
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The target of a local reference such as `#/components/schemas/User`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[tokio::test]
async fn document_lists_exactly_the_served_routes() {
    let served: BTreeMap<(String, String), Access> = route_table()
        .into_iter()
        .map(|(access, m, p)| ((m.to_lowercase(), p.to_string()), access))
        .collect();
    assert!(served.len() > 30);

    let app = spawn().await;
    let doc = document(&app).await;
    let documented = operations(&doc);

    let missing: Vec<_> = served
        .keys()
        .filter(|r| !documented.contains_key(*r))
        .collect();
    let extra: Vec<_> = documented
        .keys()
        .filter(|r| !served.contains_key(*r))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}; documented but not served: {extra:?}"
    );

    let mut ids = BTreeSet::new();
    for ((method, path), operation) in &documented {
        let route = format!("{method} {path}");
        let access = served[&(method.clone(), path.clone())];
        // Sign-in takes its credential in the body, not as a security scheme.
        let sign_in = access == Access::Console && method == "post";
        let expected = if sign_in { Access::Public } else { access };
        assert_eq!(documented_access(operation), expected, "{route}");
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{route}: no success answer"
        );
        let refusals = ["401", "403", "429"].map(|s| responses.contains_key(s));
        let needs_credentials = access != Access::Public;
        // Only reading the console session can never be forbidden.
        let forbidden = needs_credentials && !(access == Access::Console && method == "get");
        assert_eq!(
            refusals,
            [needs_credentials, forbidden, needs_credentials],
            "{route}: 401/403/429 documented exactly when the route needs credentials"
        );
        let id = operation["operationId"].as_str().unwrap();
        assert!(
            ids.insert(id.to_string()),
            "{route}: operationId {id} twice"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{route}: no summary"
        );
        assert!(
            operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{route}: no tag"
        );

        // Path parameters: exactly the path's `{name}`s, all required.
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{route}");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(declared, in_path, "{route}: path parameters");
    }
}

#[tokio::test]
async fn every_reference_resolves() {
    let app = spawn().await;
    let doc = document(&app).await;
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        assert!(resolve(&doc, r).is_some(), "dangling {r}");
    }
    for operation in operations(&doc).values() {
        for requirement in operation["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    doc["components"]["securitySchemes"].get(scheme).is_some(),
                    "unknown security scheme {scheme}"
                );
            }
        }
    }
    // The credential is documented as write-only and never in outputs.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ProviderInput"]["properties"]["api_key"]["writeOnly"],
        true
    );
    assert!(schemas["Provider"]["properties"].get("api_key").is_none());
    // A PATCH body is its POST body with nothing required.
    assert_eq!(
        schemas["UserPatch"]["properties"],
        schemas["UserInput"]["properties"]
    );
    assert!(schemas["UserPatch"].get("required").is_none());
}

/// Follows `$ref`s to the schema itself.
fn deref<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        schema = resolve(doc, r).unwrap_or_else(|| panic!("dangling {r}"));
    }
    schema
}

/// The properties and required names of an object schema, its `allOf`
/// parts merged; `None` when it does not list properties.
fn object_view<'a>(
    doc: &'a Value,
    schema: &'a Value,
) -> Option<(BTreeMap<&'a str, &'a Value>, BTreeSet<&'a str>)> {
    let schema = deref(doc, schema);
    let mut properties = BTreeMap::new();
    let mut required = BTreeSet::new();
    let mut found = false;
    if let Some(map) = schema["properties"].as_object() {
        found = true;
        properties.extend(map.iter().map(|(k, v)| (k.as_str(), v)));
    }
    required.extend(
        schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().unwrap()),
    );
    for part in schema["allOf"].as_array().into_iter().flatten() {
        if let Some((p, r)) = object_view(doc, part) {
            found = true;
            properties.extend(p);
            required.extend(r);
        }
    }
    found.then_some((properties, required))
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// Checks `value` against `schema`: types, enums, and for objects that every
/// field is a documented property and every required property is there.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = deref(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema[key].as_array() {
            let fits = branches.iter().any(|branch| {
                let mut e = Vec::new();
                check(doc, branch, value, at, &mut e);
                e.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: {value} fits no branch of {key}"));
            }
            return;
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let part = deref(doc, part);
        if let Some(kind) = part.get("type") {
            check(doc, &json!({ "type": kind }), value, at, errors);
        }
    }
    let fits = match &schema["type"] {
        Value::String(kind) => has_type(value, kind),
        Value::Array(kinds) => kinds.iter().any(|k| has_type(value, k.as_str().unwrap())),
        _ => true,
    };
    if !fits {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(value) {
            errors.push(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    match value {
        Value::Object(map) => {
            let Some((properties, required)) = object_view(doc, schema) else {
                return;
            };
            for (name, field) in map {
                match properties.get(name.as_str()) {
                    Some(property) => check(doc, property, field, &format!("{at}.{name}"), errors),
                    None => errors.push(format!("{at}.{name}: not a documented property")),
                }
            }
            for name in required {
                if !map.contains_key(name) {
                    errors.push(format!("{at}.{name}: required but missing"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(doc, item, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Sends the request and checks the answer against the schema the document
/// gives for its route and status.
async fn answer_fits(
    app: &TestApp,
    doc: &Value,
    method: Method,
    route: &str,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let (status, answer) = app
        .send(method.clone(), path, Some(ADMIN_TOKEN), body.as_ref())
        .await;
    assert_eq!(status, expected, "{method} {path}: {answer}");
    let operation = &doc["paths"][route][method.as_str().to_lowercase()];
    let response = &operation["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {route}: {status} not documented"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {route}: no JSON schema for {status}"
    );
    let mut errors = Vec::new();
    check(doc, schema, &answer, "$", &mut errors);
    assert!(errors.is_empty(), "{method} {path}: {errors:#?}\n{answer}");
    answer
}

#[tokio::test]
async fn answers_fit_their_documented_schemas() {
    let app = spawn().await;
    let doc = document(&app).await;
    let post = |route: &'static str, path: String, body: Value| {
        let doc = &doc;
        let app = &app;
        async move {
            answer_fits(
                app,
                doc,
                Method::POST,
                route,
                &path,
                Some(body),
                StatusCode::CREATED,
            )
            .await
        }
    };
    let get = |route: &'static str, path: String| {
        let doc = &doc;
        let app = &app;
        async move { answer_fits(app, doc, Method::GET, route, &path, None, StatusCode::OK).await }
    };

    let user = post(
        "/api/v1/users",
        "/api/v1/users".into(),
        json!({ "name": "schema-user", "rpm": 60, "limit_daily_usd": "5" }),
    )
    .await;
    let uid = user["id"].as_i64().unwrap();
    get("/api/v1/users/{id}", format!("/api/v1/users/{uid}")).await;
    get("/api/v1/users", "/api/v1/users".into()).await;

    let key = post(
        "/api/v1/users/{id}/keys",
        format!("/api/v1/users/{uid}/keys"),
        json!({ "name": "k1", "can_login_web_ui": true }),
    )
    .await;
    let kid = key["id"].as_i64().unwrap();
    let keys = get(
        "/api/v1/users/{id}/keys",
        format!("/api/v1/users/{uid}/keys"),
    )
    .await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    get("/api/v1/keys/{id}", format!("/api/v1/keys/{kid}")).await;
    answer_fits(
        &app,
        &doc,
        Method::POST,
        "/api/v1/keys/{id}/rotate",
        &format!("/api/v1/keys/{kid}/rotate"),
        None,
        StatusCode::OK,
    )
    .await;

    let provider = post(
        "/api/v1/providers",
        "/api/v1/providers".into(),
        json!({
            "name": "schema-provider", "type": "claude", "base_url": "https://api.example.com",
            "api_key": "sk-provider-secret",
            "model_redirects": [{ "match_type": "prefix", "pattern": "claude-", "target": "claude-x" }]
        }),
    )
    .await;
    let pid = provider["id"].as_i64().unwrap();
    get("/api/v1/providers/{id}", format!("/api/v1/providers/{pid}")).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let circuits = json!([{"provider_id": pid, "state": "open", "failures": 0, "successes": 0,
        "open_until_ms": now_ms + 60_000, "reset_at_ms": 0}]);
    let (status, _) = app
        .internal_post(
            hubgate_wire::CIRCUITS_PATH,
            json!({"instance": "envoy-a", "now_ms": now_ms, "circuits": circuits}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let circuit = get(
        "/api/v1/providers/{id}/circuit",
        format!("/api/v1/providers/{pid}/circuit"),
    )
    .await;
    assert_eq!(circuit["state"], "open");
    let eligibility = get(
        "/api/v1/providers/eligibility",
        format!(
            "/api/v1/providers/eligibility?user_id={uid}&model=claude-3&api=anthropic_messages"
        ),
    )
    .await;
    assert_eq!(eligibility["providers"][0]["reason"], "circuit_open");
    answer_fits(
        &app,
        &doc,
        Method::POST,
        "/api/v1/providers/{id}/circuit/reset",
        &format!("/api/v1/providers/{pid}/circuit/reset"),
        None,
        StatusCode::OK,
    )
    .await;
    get("/api/v1/model-prices", "/api/v1/model-prices".into()).await;
    post(
        "/api/v1/sensitive-words",
        "/api/v1/sensitive-words".into(),
        json!({ "word": "secret-plan" }),
    )
    .await;
    post(
        "/api/v1/request-filters",
        "/api/v1/request-filters".into(),
        json!({
            "name": "strip", "scope": "header", "action": "remove", "target": "x-debug",
            "binding": "providers", "provider_ids": [pid]
        }),
    )
    .await;
    get("/api/v1/settings", "/api/v1/settings".into()).await;
    get("/api/v1/client-versions", "/api/v1/client-versions".into()).await;

    let mut e = event("schema-e1");
    e.user_id = Some(uid);
    e.key_id = Some(kid);
    e.provider_id = Some(pid);
    e.session_id = Some("s-1".into());
    e.blocked_reason = Some(json!({ "word": "x" }));
    e.cost_breakdown = Some(hubgate_wire::CostBreakdown {
        output_usd: rust_decimal::Decimal::new(6, 3),
        ..Default::default()
    });
    let mut refused = event("schema-e2");
    refused.user_id = Some(uid);
    refused.status = 400;
    refused.blocked_by = Some("sensitive_word".into());
    ingest(&app, &[e, refused]).await;
    let page = get("/api/v1/requests", "/api/v1/requests".into()).await;
    assert_eq!(page["total"], 2);
    for item in page["items"].as_array().unwrap() {
        let row = get(
            "/api/v1/requests/{id}",
            format!("/api/v1/requests/{}", item["id"]),
        )
        .await;
        assert_eq!(&row, item);
    }
    for window in ["hour", "day", "week"] {
        let overview = get(
            "/api/v1/overview",
            format!("/api/v1/overview?window={window}"),
        )
        .await;
        assert_eq!(overview["totals"]["requests"], 2);
    }
    for text in ["my secret-plan", "nothing"] {
        answer_fits(
            &app,
            &doc,
            Method::POST,
            "/api/v1/sensitive-words/test",
            "/api/v1/sensitive-words/test",
            Some(json!({ "text": text })),
            StatusCode::OK,
        )
        .await;
    }
    let page = get("/api/v1/sessions", "/api/v1/sessions".into()).await;
    assert_eq!(page["total"], 1);
    let usage = get(
        "/api/v1/usage/users/{id}",
        format!("/api/v1/usage/users/{uid}"),
    )
    .await;
    assert!(usage["rpm"].is_object());
    let usage = get(
        "/api/v1/usage/keys/{id}",
        format!("/api/v1/usage/keys/{kid}"),
    )
    .await;
    assert!(usage["rpm"].is_null());

    // Error answers fit the documented error schema too.
    answer_fits(
        &app,
        &doc,
        Method::GET,
        "/api/v1/users/{id}",
        "/api/v1/users/999999",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    answer_fits(
        &app,
        &doc,
        Method::POST,
        "/api/v1/users",
        "/api/v1/users",
        Some(json!({ "name": "" })),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Console sign-in (the token is in the body; the bearer is ignored).
    let session = answer_fits(
        &app,
        &doc,
        Method::POST,
        "/ui/api/session",
        "/ui/api/session",
        Some(json!({ "token": ADMIN_TOKEN })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(session["role"], "admin");
}

/// A value a query parameter of this schema accepts; `ids` gives real
/// values for parameters that name a row.
fn sample(name: &str, schema: &Value, ids: &BTreeMap<&str, i64>) -> String {
    if let Some(id) = ids.get(name) {
        return id.to_string();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().unwrap().to_string();
    }
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("integer"), _) => schema["minimum"].as_i64().unwrap_or(1).to_string(),
        (Some("boolean"), _) => "false".into(),
        (Some("string"), Some("date-time")) => "2026-01-01T00:00:00Z".into(),
        (Some("string"), _) => "x".into(),
        other => panic!("no sample for {other:?}"),
    }
}

/// Parameters a route needs beside its required ones (one of several).
const NEEDS: &[(&str, &str)] = &[("/api/v1/providers/eligibility", "user_id")];

#[tokio::test]
async fn documented_query_parameters_are_accepted() {
    let app = spawn().await;
    let doc = document(&app).await;
    let user = app.create_user("params").await["id"].as_i64().unwrap();
    let (key, _) = app.create_key(user, json!({ "name": "k" })).await;
    let ids = BTreeMap::from([("user_id", user), ("key_id", key["id"].as_i64().unwrap())]);
    let mut lists = 0;
    for ((method, path), operation) in operations(&doc) {
        let params: Vec<&Value> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .collect();
        if params.is_empty() {
            continue;
        }
        assert_eq!(method, "get", "{path}");
        lists += 1;
        let param = |p: &Value| {
            let name = p["name"].as_str().unwrap();
            format!("{name}={}", sample(name, &p["schema"], &ids))
        };
        let needed: Vec<String> = params
            .iter()
            .filter(|p| {
                p["required"] == true
                    || NEEDS.contains(&(path.as_str(), p["name"].as_str().unwrap()))
            })
            .map(|p| param(p))
            .collect();
        for p in &params {
            let mut query = needed.clone();
            query.push(param(p));
            let query = format!("{path}?{}", query.join("&"));
            let (status, body) = app.get(&query).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
        }
        let mut query = needed.clone();
        query.push("not_a_parameter=1".into());
        let (status, body) = app.get(&format!("{path}?{}", query.join("&"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"]["field"], "not_a_parameter");
    }
    assert_eq!(
        lists, 5,
        "/api/v1/requests, /api/v1/requests/export.csv, /api/v1/sessions, /api/v1/overview and \
         /api/v1/providers/eligibility"
    );
}

#[tokio::test]
async fn public_routes_answer_their_documented_content_type() {
    let app = spawn().await;
    let doc = document(&app).await;
    for ((method, path), operation) in operations(&doc) {
        // Console sign-in takes its credential in a POST body (ui_session.rs).
        if documented_access(operation) != Access::Public || path == "/ui/api/session" {
            continue;
        }
        assert_eq!(method, "get", "{path}");
        let response = app.client.get(app.url(&path)).send().await.unwrap();
        let status = response.status();
        let served = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let content = &operation["responses"][status.as_str()]["content"];
        let documented: Vec<&String> = content.as_object().unwrap().keys().collect();
        let essence = |t: &str| t.split(';').next().unwrap().trim().to_string();
        assert!(
            documented.iter().any(|d| essence(d) == essence(&served)),
            "{path}: served {served}, documented {documented:?}"
        );
    }
}
