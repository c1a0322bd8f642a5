//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`: the admin
//! listener (the filter's internal API has its own listener and is not
//! described here). Maintained by hand; a test checks that it lists exactly
//! the routes the admin listener serves (`app::route_table`).

use axum::Json;
use serde_json::{json, Map, Value};

use crate::admin::providers::{MAX_PRIORITY, MAX_WEIGHT};

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Admin,
    /// An admin, or a user's key with `can_login_web_ui` (own data only).
    Account,
}

struct Op {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    status: &'static str,
    response: Option<Value>,
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema_ref(name) })
}

#[allow(clippy::too_many_arguments)]
fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    status: &'static str,
    response: Option<Value>,
) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        auth,
        body,
        status,
        response,
    }
}

fn crud(
    tag: &'static str,
    collection: &'static str,
    item: &'static str,
    schema: &'static str,
    input: &'static str,
    patch: &'static str,
    delete_summary: &'static str,
) -> Vec<Op> {
    use Auth::Admin;
    vec![
        op(
            "POST",
            collection,
            tag,
            "Create",
            Admin,
            Some(input),
            "201",
            Some(schema_ref(schema)),
        ),
        op(
            "GET",
            collection,
            tag,
            "List",
            Admin,
            None,
            "200",
            Some(list_of(schema)),
        ),
        op(
            "GET",
            item,
            tag,
            "Get one",
            Admin,
            None,
            "200",
            Some(schema_ref(schema)),
        ),
        op(
            "PATCH",
            item,
            tag,
            "Update (any subset of fields; null clears a nullable field)",
            Admin,
            Some(patch),
            "200",
            Some(schema_ref(schema)),
        ),
        op(
            "DELETE",
            item,
            tag,
            delete_summary,
            Admin,
            None,
            "204",
            None,
        ),
    ]
}

fn operations() -> Vec<Op> {
    use Auth::{Admin, None as Public};
    let mut ops = vec![
        op(
            "GET",
            "/healthz",
            "service",
            "Liveness",
            Public,
            None,
            "200",
            Some(json!({"type": "string"})),
        ),
        op(
            "GET",
            "/readyz",
            "service",
            "Readiness (database reachable)",
            Public,
            None,
            "200",
            Some(json!({"type": "string"})),
        ),
        op(
            "GET",
            "/metrics",
            "service",
            "Prometheus metrics",
            Public,
            None,
            "200",
            Some(json!({"type": "string"})),
        ),
        op(
            "GET",
            "/api/v1/openapi.json",
            "service",
            "This document",
            Public,
            None,
            "200",
            Some(json!({"type": "object"})),
        ),
    ];
    ops.extend(crud(
        "users",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "User",
        "UserInput",
        "UserPatch",
        "Soft-delete the user and their keys",
    ));
    ops.extend([
        op(
            "POST",
            "/api/v1/users/{id}/keys",
            "keys",
            "Create a key; the raw `key` is returned only here",
            Admin,
            Some("KeyInput"),
            "201",
            Some(schema_ref("KeyCreated")),
        ),
        op(
            "GET",
            "/api/v1/users/{id}/keys",
            "keys",
            "List the user's keys (masked); users: their own",
            Auth::Account,
            None,
            "200",
            Some(list_of("Key")),
        ),
        op(
            "POST",
            "/api/v1/keys/{id}/rotate",
            "keys",
            "Replace the key's secret (the old one stops working at once); the new raw `key` is returned only here. Users: their own keys",
            Auth::Account,
            None,
            "200",
            Some(schema_ref("KeyCreated")),
        ),
        op(
            "GET",
            "/api/v1/keys/{id}",
            "keys",
            "Get one key (masked)",
            Admin,
            None,
            "200",
            Some(schema_ref("Key")),
        ),
        op(
            "PATCH",
            "/api/v1/keys/{id}",
            "keys",
            "Update a key (enable/disable, expiry, limits)",
            Admin,
            Some("KeyPatch"),
            "200",
            Some(schema_ref("Key")),
        ),
        op(
            "DELETE",
            "/api/v1/keys/{id}",
            "keys",
            "Soft-delete a key",
            Admin,
            None,
            "204",
            None,
        ),
    ]);
    ops.extend(crud(
        "providers",
        "/api/v1/providers",
        "/api/v1/providers/{id}",
        "Provider",
        "ProviderInput",
        "ProviderPatch",
        "Soft-delete a provider",
    ));
    ops.extend(crud(
        "model-prices",
        "/api/v1/model-prices",
        "/api/v1/model-prices/{id}",
        "ModelPrice",
        "ModelPriceInput",
        "ModelPricePatch",
        "Delete a price (kept as a tombstone so the seed does not restore it)",
    ));
    ops.extend(crud(
        "sensitive-words",
        "/api/v1/sensitive-words",
        "/api/v1/sensitive-words/{id}",
        "SensitiveWord",
        "SensitiveWordInput",
        "SensitiveWordPatch",
        "Delete a word",
    ));
    ops.extend(crud(
        "request-filters",
        "/api/v1/request-filters",
        "/api/v1/request-filters/{id}",
        "RequestFilter",
        "RequestFilterInput",
        "RequestFilterPatch",
        "Delete a filter",
    ));
    ops.extend([
        op(
            "GET",
            "/api/v1/settings",
            "settings",
            "Get settings",
            Admin,
            None,
            "200",
            Some(schema_ref("Settings")),
        ),
        op(
            "PATCH",
            "/api/v1/settings",
            "settings",
            "Update settings",
            Admin,
            Some("SettingsPatch"),
            "200",
            Some(schema_ref("Settings")),
        ),
        op(
            "GET",
            "/api/v1/client-versions",
            "settings",
            "GA version per client type (highest version used by ga_threshold distinct users in the last 7 days); the client version check compares against these",
            Admin,
            None,
            "200",
            Some(list_of("ClientVersion")),
        ),
        op(
            "GET",
            "/api/v1/requests",
            "requests",
            "Audit log, newest first",
            Admin,
            None,
            "200",
            Some(schema_ref("RequestPage")),
        ),
        op(
            "GET",
            "/api/v1/sessions",
            "sessions",
            "Client sessions, most recently active first; only active ones unless active=false",
            Admin,
            None,
            "200",
            Some(schema_ref("SessionPage")),
        ),
        op(
            "POST",
            "/api/v1/usage/users/{id}/reset",
            "usage",
            "Start the user's lifetime spend (limit_total_usd) again from now: moves cost_reset_at",
            Admin,
            None,
            "200",
            Some(schema_ref("Usage")),
        ),
        op(
            "POST",
            "/api/v1/usage/keys/{id}/reset",
            "usage",
            "Start the key's lifetime spend (limit_total_usd) again from now: moves cost_reset_at",
            Admin,
            None,
            "200",
            Some(schema_ref("Usage")),
        ),
    ]);
    for (path, summary) in [
        (
            "/api/v1/usage/users/{id}",
            "A user's spend per quota window, with limits and reset times (users: their own)",
        ),
        (
            "/api/v1/usage/keys/{id}",
            "A key's spend per quota window, with limits and reset times (users: their own keys)",
        ),
    ] {
        ops.push(op(
            "GET",
            path,
            "usage",
            summary,
            Auth::Account,
            None,
            "200",
            Some(schema_ref("Usage")),
        ));
    }
    ops
}

/// The (method, path) pairs the document describes.
pub fn documented_routes() -> Vec<(&'static str, &'static str)> {
    operations().iter().map(|o| (o.method, o.path)).collect()
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema_ref("Error") } } })
}

fn operation(o: &Op) -> Value {
    let mut params = Vec::new();
    if o.path.contains("{id}") {
        params.push(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } }));
    }
    if o.path == "/api/v1/requests" {
        for (name, schema, description) in [
            (
                "user_id",
                json!({"type": "integer"}),
                "Only this user's requests",
            ),
            (
                "key_id",
                json!({"type": "integer"}),
                "Only this key's requests",
            ),
            (
                "provider_id",
                json!({"type": "integer"}),
                "Only requests sent to this provider",
            ),
            ("session_id", json!({"type": "string"}), "Only this session"),
            (
                "status",
                json!({"type": "integer"}),
                "HTTP status answered to the client",
            ),
            (
                "blocked_by",
                json!({"type": "string"}),
                "Stable code of the guard that answered, e.g. sensitive_word",
            ),
            (
                "from",
                json!({"type": "string", "format": "date-time"}),
                "RFC 3339, inclusive",
            ),
            (
                "to",
                json!({"type": "string", "format": "date-time"}),
                "RFC 3339, exclusive",
            ),
            (
                "page",
                json!({"type": "integer", "minimum": 1, "default": 1}),
                "1-based page",
            ),
            (
                "page_size",
                json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                "Items per page",
            ),
        ] {
            params.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
        }
    }
    if o.path == "/api/v1/sessions" {
        for (name, schema, description) in [
            (
                "user_id",
                json!({"type": "integer"}),
                "Only this user's sessions",
            ),
            (
                "key_id",
                json!({"type": "integer"}),
                "Only this key's sessions",
            ),
            (
                "active",
                json!({"type": "boolean", "default": true}),
                "true: only sessions with a request in the last 300 s; false: every retained session \
                 (idle ones are deleted after 24 h)",
            ),
            (
                "page",
                json!({"type": "integer", "minimum": 1, "default": 1}),
                "1-based page",
            ),
            (
                "page_size",
                json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                "Items per page",
            ),
        ] {
            params.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
        }
    }

    let mut responses = Map::new();
    let mut ok = json!({ "description": "OK" });
    if let Some(schema) = &o.response {
        let media = match o.path {
            "/metrics" => "application/openmetrics-text",
            "/healthz" | "/readyz" => "text/plain",
            _ => "application/json",
        };
        ok["content"] = json!({ media: { "schema": schema } });
    }
    responses.insert(o.status.to_string(), ok);
    if o.auth != Auth::None {
        responses.insert(
            "401".into(),
            error_response("Missing or invalid bearer token"),
        );
    }
    if o.auth == Auth::Admin {
        responses.insert(
            "403".into(),
            error_response("A valid key of a non-admin user"),
        );
    }
    if o.auth == Auth::Account {
        responses.insert(
            "403".into(),
            error_response("A key of a user without can_login_web_ui, or another user's data"),
        );
    }
    if o.auth != Auth::None {
        responses.insert(
            "429".into(),
            error_response(
                "Too many failed authentications from this client address (`auth_locked_out`); \
                 refused until the Retry-After header's seconds have passed, valid credentials included",
            ),
        );
    }
    if o.path.contains("{id}") {
        responses.insert("404".into(), error_response("No such resource"));
    }
    if o.body.is_some() {
        responses.insert("400".into(), error_response("Body is not JSON"));
        responses.insert(
            "415".into(),
            error_response("Body not sent as application/json (or application/*+json)"),
        );
        responses.insert(
            "422".into(),
            error_response(
                "Validation failed, or a key repeats within an object; `field` names the offending field",
            ),
        );
    }
    if o.method == "POST" || o.method == "PATCH" {
        responses.insert("409".into(), error_response("Duplicate name"));
    }
    if o.path == "/api/v1/requests" || o.path == "/api/v1/sessions" {
        responses.insert(
            "422".into(),
            error_response("Invalid query parameter; `field` names it"),
        );
    }

    let mut out = json!({
        "tags": [o.tag],
        "summary": o.summary,
        "operationId": format!("{} {}", o.method.to_lowercase(), o.path),
        "parameters": params,
        "responses": responses,
    });
    out["security"] = match o.auth {
        Auth::None => json!([]),
        Auth::Admin => json!([{ "adminBearer": [] }]),
        Auth::Account => json!([{ "adminBearer": [] }, { "userBearer": [] }]),
    };
    if let Some(body) = o.body {
        out["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema_ref(body) } } });
    }
    out
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method.to_lowercase()] = operation(&o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hubgate control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API (bearer admin token, or the key of an admin-role user). The filter's \
                internal API is served on a separate listener and is not described here. Request bodies are JSON \
                (Content-Type: application/json), with no key repeated in an object. Errors: \
                {\"error\":{\"code\",\"message\",\"field\"?}}. \
                Decimals are accepted as numbers or strings and returned as strings; timestamps are RFC 3339 UTC."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminBearer": { "type": "http", "scheme": "bearer", "description": "Admin token or an admin user's key" },
                "userBearer": { "type": "http", "scheme": "bearer", "description": "A user's key with can_login_web_ui: that user's own data only" }
            },
            "schemas": schemas()
        }
    })
}

// Schema helpers.

fn t(kind: &str) -> Value {
    json!({ "type": kind })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

fn decimal_in() -> Value {
    json!({ "type": ["string", "number"], "description": "Decimal, as a number or a string" })
}

fn decimal_out() -> Value {
    json!({ "type": "string", "format": "decimal" })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn object(required: &[&str], props: Vec<(&str, Value)>) -> Value {
    let mut properties = Map::new();
    for (name, schema) in props {
        properties.insert(name.to_string(), schema);
    }
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

/// The same object with every field optional (PATCH bodies).
fn patch_of(input: &Value) -> Value {
    let mut patch = input.clone();
    patch["required"] = json!([]);
    patch
}

/// Adds the resource's read-only fields to its input properties.
fn output_of(input_props: Vec<(&'static str, Value)>, extra: Vec<(&'static str, Value)>) -> Value {
    let mut props = vec![("id", t("integer"))];
    props.extend(input_props.into_iter().map(|(name, schema)| {
        let is_decimal_in = schema == decimal_in();
        let is_nullable_decimal = schema == nullable(decimal_in());
        let schema = if is_decimal_in {
            decimal_out()
        } else if is_nullable_decimal {
            nullable(decimal_out())
        } else {
            schema
        };
        (name, schema)
    }));
    props.extend(extra);
    props.push(("created_at", time()));
    props.push(("updated_at", time()));
    let names: Vec<&str> = props.iter().map(|(n, _)| *n).collect();
    object(&names, props)
}

fn limit_props() -> Vec<(&'static str, Value)> {
    vec![
        ("limit_total_usd", nullable(decimal_in())),
        ("limit_5h_usd", nullable(decimal_in())),
        ("limit_5h_mode", one_of(&["rolling", "fixed"])),
        ("limit_daily_usd", nullable(decimal_in())),
        ("limit_weekly_usd", nullable(decimal_in())),
        ("limit_monthly_usd", nullable(decimal_in())),
        (
            "limit_concurrent_sessions",
            nullable(json!({ "type": "integer", "minimum": 0 })),
        ),
    ]
}

fn name_schema() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 64, "description": "No control characters, no leading or trailing whitespace" })
}

fn models_schema() -> Value {
    json!({ "type": "array", "maxItems": 50, "items": { "type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9._:/-]+$" } })
}

fn patterns_schema() -> Value {
    json!({ "type": "array", "maxItems": 50, "items": { "type": "string", "minLength": 1, "maxLength": 64 } })
}

fn user_props() -> Vec<(&'static str, Value)> {
    let mut p = vec![
        ("name", name_schema()),
        ("description", t("string")),
        ("role", one_of(&["admin", "user"])),
        ("enabled", t("boolean")),
        ("expires_at", nullable(time())),
        ("allowed_clients", patterns_schema()),
        ("blocked_clients", patterns_schema()),
        ("allowed_models", models_schema()),
        ("rpm", nullable(json!({ "type": "integer", "minimum": 1 }))),
    ];
    p.extend(limit_props());
    p.extend([
        ("daily_reset_mode", one_of(&["fixed", "rolling"])),
        (
            "daily_reset_time",
            json!({ "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" }),
        ),
        ("provider_group", nullable(name_schema())),
    ]);
    p
}

fn key_props() -> Vec<(&'static str, Value)> {
    let mut p = vec![
        ("name", name_schema()),
        ("enabled", t("boolean")),
        ("expires_at", nullable(time())),
        ("can_login_web_ui", t("boolean")),
    ];
    p.extend(limit_props());
    p.push(("provider_group", nullable(name_schema())));
    p
}

fn provider_props() -> Vec<(&'static str, Value)> {
    let mut p = vec![
        ("name", name_schema()),
        (
            "type",
            one_of(&["claude", "codex", "openai-compatible", "gemini"]),
        ),
        (
            "base_url",
            json!({ "type": "string", "format": "uri", "description": "http(s) URL with a host" }),
        ),
        ("enabled", t("boolean")),
        (
            "weight",
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_WEIGHT, "default": 1 }),
        ),
        (
            "priority",
            json!({ "type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY, "default": 0, "description": "Lower wins" }),
        ),
        ("cost_multiplier", decimal_in()),
        ("group_tags", patterns_schema()),
        ("allowed_models", models_schema()),
        (
            "model_redirects",
            json!({ "type": "array", "maxItems": 100, "items": schema_ref("ModelRedirect") }),
        ),
    ];
    p.extend(limit_props());
    p.extend([
        (
            "circuit_failure_threshold",
            json!({ "type": "integer", "minimum": 1, "default": 5 }),
        ),
        (
            "circuit_open_seconds",
            json!({ "type": "integer", "minimum": 1, "default": 1800 }),
        ),
        (
            "circuit_half_open_successes",
            json!({ "type": "integer", "minimum": 1, "default": 2 }),
        ),
        (
            "first_byte_timeout_ms",
            nullable(json!({ "type": "integer", "minimum": 1 })),
        ),
        (
            "idle_timeout_ms",
            nullable(json!({ "type": "integer", "minimum": 1 })),
        ),
    ]);
    p
}

fn price_props() -> Vec<(&'static str, Value)> {
    vec![
        (
            "model",
            json!({ "type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9._:/-]+$" }),
        ),
        ("input_per_mtok", decimal_in()),
        ("output_per_mtok", decimal_in()),
        ("cache_write_5m_per_mtok", nullable(decimal_in())),
        ("cache_write_1h_per_mtok", nullable(decimal_in())),
        ("cache_read_per_mtok", nullable(decimal_in())),
    ]
}

fn word_props() -> Vec<(&'static str, Value)> {
    vec![
        ("word", t("string")),
        ("match_type", one_of(&["contains", "exact", "regex"])),
        ("description", t("string")),
        ("enabled", t("boolean")),
    ]
}

fn filter_props() -> Vec<(&'static str, Value)> {
    vec![
        ("name", name_schema()),
        ("description", t("string")),
        ("scope", one_of(&["header", "body"])),
        (
            "action",
            one_of(&["remove", "set", "json_path", "text_replace"]),
        ),
        (
            "match_type",
            nullable(one_of(&["contains", "exact", "regex"])),
        ),
        ("target", t("string")),
        (
            "replacement",
            json!({ "description": "Any JSON value; a string for header and text_replace" }),
        ),
        ("priority", t("integer")),
        ("enabled", t("boolean")),
        ("binding", one_of(&["global", "providers", "groups"])),
        (
            "provider_ids",
            json!({ "type": "array", "items": { "type": "integer" } }),
        ),
        ("group_tags", patterns_schema()),
    ]
}

fn settings_props() -> Vec<(&'static str, Value)> {
    vec![
        ("enable_client_version_check", t("boolean")),
        ("intercept_anthropic_warmup_requests", t("boolean")),
        (
            "timezone",
            json!({ "type": "string", "description": "IANA time zone, e.g. UTC" }),
        ),
        ("unknown_path", one_of(&["passthrough", "not_found"])),
        ("ga_threshold", json!({ "type": "integer", "minimum": 1 })),
        (
            "locale",
            json!({ "type": "string", "enum": crate::admin::settings::LOCALES, "default": "en",
                    "description": "Language of messages to clients; codes, types and field names never change" }),
        ),
        (
            "audit_retention_days",
            json!({ "type": "integer", "minimum": 1, "maximum": crate::admin::settings::MAX_RETENTION_DAYS, "default": 90,
                    "description": "Audit rows are kept at least this many days (whole days are dropped); usage totals are kept regardless" }),
        ),
    ]
}

fn schemas() -> Value {
    let user_in = object(&["name"], user_props());
    let key_in = object(&["name"], key_props());
    let mut provider_in_props = provider_props();
    provider_in_props.push(("api_key", json!({ "type": "string", "writeOnly": true, "description": "Provider credential; never returned" })));
    let provider_in = object(&["name", "type", "base_url", "api_key"], provider_in_props);
    let price_in = object(
        &["model", "input_per_mtok", "output_per_mtok"],
        price_props(),
    );
    let word_in = object(&["word"], word_props());
    let filter_in = object(&["name", "scope", "action", "target"], filter_props());
    let settings_in = object(&[], settings_props());

    let key_out = output_of(
        key_props(),
        vec![
            ("user_id", t("integer")),
            (
                "key_masked",
                json!({ "type": "string", "example": "sk-…abcd" }),
            ),
            ("cost_reset_at", nullable(time())),
        ],
    );
    let mut key_created = key_out.clone();
    key_created["properties"]["key"] =
        json!({ "type": "string", "description": "The raw key, shown only in this answer" });
    if let Some(required) = key_created["required"].as_array_mut() {
        required.push(json!("key"));
    }

    let mut settings_out_props = settings_props();
    settings_out_props.push(("updated_at", time()));
    let settings_names: Vec<&str> = settings_out_props.iter().map(|(n, _)| *n).collect();
    let settings_out = object(&settings_names, settings_out_props);

    let request_log_props: Vec<(&str, Value)> = vec![
        ("id", t("integer")),
        ("event_id", t("string")),
        ("request_id", t("string")),
        ("started_at", time()),
        ("received_at", time()),
        ("user_id", nullable(t("integer"))),
        ("key_id", nullable(t("integer"))),
        ("key_masked", nullable(t("string"))),
        ("provider_id", nullable(t("integer"))),
        ("method", t("string")),
        ("endpoint", t("string")),
        ("original_model", nullable(t("string"))),
        ("upstream_model", nullable(t("string"))),
        ("status", t("integer")),
        ("duration_ms", t("integer")),
        ("ttfb_ms", nullable(t("integer"))),
        ("input_tokens", t("integer")),
        ("output_tokens", t("integer")),
        ("cache_creation_5m_tokens", t("integer")),
        ("cache_creation_1h_tokens", t("integer")),
        ("cache_read_tokens", t("integer")),
        ("cost_usd", decimal_out()),
        ("cost_multiplier", decimal_out()),
        ("session_id", nullable(t("string"))),
        ("user_agent", nullable(t("string"))),
        ("client_ip", nullable(t("string"))),
        ("stream", t("boolean")),
        ("blocked_by", nullable(t("string"))),
        (
            "blocked_reason",
            json!({ "description": "JSON object or null" }),
        ),
        ("error", nullable(t("string"))),
        ("flags", strings()),
    ];
    let log_names: Vec<&str> = request_log_props.iter().map(|(n, _)| *n).collect();
    let request_log = object(&log_names, request_log_props);

    let session_props: Vec<(&str, Value)> = vec![
        (
            "session_id",
            json!({ "type": "string", "description": "Client-provided; unique per key, not globally" }),
        ),
        ("user_id", nullable(t("integer"))),
        ("key_id", t("integer")),
        (
            "client",
            json!({ "anyOf": [{ "type": "string", "maxLength": 256 }, { "type": "null" }],
                    "description": "User agent of the latest request, clipped to 256 characters" }),
        ),
        (
            "provider_id",
            json!({ "anyOf": [{ "type": "integer" }, { "type": "null" }],
                    "description": "Provider of the latest request" }),
        ),
        ("first_seen_at", time()),
        ("last_seen_at", time()),
        (
            "request_count",
            json!({ "type": "integer", "description": "Forwarded requests (refusals and warmups not counted)" }),
        ),
        (
            "active",
            json!({ "type": "boolean", "description": "A request within the last 300 s" }),
        ),
    ];
    let session_names: Vec<&str> = session_props.iter().map(|(n, _)| *n).collect();
    let session = object(&session_names, session_props);

    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": one_of(&["invalid_json", "validation_failed", "unauthorized", "forbidden", "not_found", "method_not_allowed", "conflict", "payload_too_large", "unsupported_media_type", "auth_locked_out", "internal_error"]),
                    "message": t("string"),
                    "field": { "type": "string", "description": "The offending field, e.g. allowed_models[3]" }
                }
            } }
        },
        "ModelRedirect": object(&["match_type", "pattern", "target"], vec![
            ("match_type", one_of(&["exact", "prefix", "suffix", "contains", "regex"])),
            ("pattern", t("string")),
            ("target", t("string")),
        ]),
        "UserInput": user_in.clone(),
        "UserPatch": patch_of(&user_in),
        "User": output_of(user_props(), vec![("cost_reset_at", nullable(time()))]),
        "KeyInput": key_in.clone(),
        "KeyPatch": patch_of(&key_in),
        "Key": key_out,
        "KeyCreated": key_created,
        "ProviderInput": provider_in.clone(),
        "ProviderPatch": patch_of(&provider_in),
        "Provider": output_of(provider_props(), vec![("api_key_masked", json!({ "type": "string", "example": "sk-…abcd" }))]),
        "ModelPriceInput": price_in.clone(),
        "ModelPricePatch": patch_of(&price_in),
        "ModelPrice": output_of(price_props(), vec![("source", one_of(&["seed", "admin"]))]),
        "SensitiveWordInput": word_in.clone(),
        "SensitiveWordPatch": patch_of(&word_in),
        "SensitiveWord": output_of(word_props(), vec![]),
        "RequestFilterInput": filter_in.clone(),
        "RequestFilterPatch": patch_of(&filter_in),
        "RequestFilter": output_of(filter_props(), vec![]),
        "SettingsPatch": settings_in,
        "Settings": settings_out,
        "ClientVersion": object(&["client_type", "version", "users", "computed_at"], vec![
            ("client_type", t("string")),
            ("version", t("string")),
            ("users", t("integer")),
            ("computed_at", json!({ "type": "string", "format": "date-time" })),
        ]),
        "RequestLog": request_log,
        "RequestPage": object(&["items", "total", "page", "page_size"], vec![
            ("items", list_of("RequestLog")),
            ("total", t("integer")),
            ("page", t("integer")),
            ("page_size", t("integer")),
        ]),
        "Session": session,
        "Usage": usage_schema(),
        "SessionPage": object(&["items", "total", "page", "page_size"], vec![
            ("items", list_of("Session")),
            ("total", t("integer")),
            ("page", t("integer")),
            ("page_size", t("integer")),
        ]),
    })
}

fn usage_schema() -> Value {
    let counted = |what: &str| {
        object(
            &["current", "limit"],
            vec![
                ("current", json!({ "type": "integer", "description": what })),
                ("limit", nullable(t("integer"))),
            ],
        )
    };
    let window = object(
        &[
            "limit_type",
            "mode",
            "spent_usd",
            "limit_usd",
            "remaining_usd",
            "window_start",
            "reset_at",
            "rolling_hours",
        ],
        vec![
            (
                "limit_type",
                one_of(&[
                    "usd_total",
                    "usd_5h",
                    "daily_quota",
                    "usd_weekly",
                    "usd_monthly",
                ]),
            ),
            ("mode", one_of(&["lifetime", "fixed", "rolling"])),
            ("spent_usd", decimal_out()),
            ("limit_usd", nullable(decimal_out())),
            ("remaining_usd", nullable(decimal_out())),
            (
                "window_start",
                json!({ "anyOf": [time(), { "type": "null" }], "description": "Spend counts from here; null: since the beginning" }),
            ),
            (
                "reset_at",
                json!({ "anyOf": [time(), { "type": "null" }], "description": "A fixed window's end; a rolling window's oldest charge leaving it; null: never, or 5 h after the next charge (fixed 5 h window not running)" }),
            ),
            ("rolling_hours", nullable(t("integer"))),
        ],
    );
    object(
        &[
            "entity",
            "id",
            "user_id",
            "at",
            "timezone",
            "windows",
            "concurrent_sessions",
            "rpm",
        ],
        vec![
            ("entity", one_of(&["user", "key"])),
            ("id", t("integer")),
            ("user_id", t("integer")),
            ("at", time()),
            ("timezone", t("string")),
            ("windows", json!({ "type": "array", "items": window })),
            (
                "concurrent_sessions",
                counted("Sessions with a request in the last 300 s"),
            ),
            (
                "rpm",
                nullable(counted("The user's forwarded requests in the last minute")),
            ),
        ],
    )
}
