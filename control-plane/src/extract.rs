//! Request body parsing. Bodies are strict: declared as JSON
//! (`Content-Type: application/json` or `application/*+json`), no object
//! repeats a key, and every input type has `deny_unknown_fields`. A type
//! error or a repeated key names the offending field, e.g. `allowed_models[3]`.

use std::cell::RefCell;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

use crate::errors::ApiError;

/// A JSON body deserialized into `T`; 415 when not declared as JSON, 400
/// when it is not JSON, 422 naming the field when a key repeats or it does
/// not fit `T`.
pub struct JsonBody<T>(pub T);

/// A JSON object body, kept as a map (used by PATCH, see [`merge_patch`]).
pub struct JsonObject(pub serde_json::Map<String, Value>);

/// [`JsonBody`] for big bodies (event batches): the same rules, but the body
/// is checked for repeated keys in a pass that builds nothing, then parsed
/// straight into `T`, without an intermediate [`Value`].
pub struct TypedBody<T>(pub T);

async fn read_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

async fn read_value<S: Send + Sync>(req: Request, state: &S) -> Result<Value, ApiError> {
    parse_strict(&read_bytes(req, state).await?)
}

/// `application/json` or `application/<anything>+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// Parses a JSON document, refusing any object that repeats a key (plain
/// serde_json would keep the last one silently): 422 naming the key.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ApiError> {
    refuse_repeated_keys(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// Parses a JSON document straight into `T` with the rules of
/// [`parse_strict`] and [`from_value`]: 400 when it is not JSON, 422 naming
/// a repeated key or the field that does not fit `T`.
pub fn parse_typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    refuse_repeated_keys(bytes)?;
    // Tracking the path costs on every value; it is only needed to name
    // the field of an error, so a body that fits is parsed without it.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        // serde_json adds where in the text; the field name says it better.
        let mut message = err.into_inner().to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        field_error(path, message)
    })
}

/// One pass over the document that builds nothing: 400 when it is not
/// JSON (trailing bytes included), 422 naming the first repeated key.
fn refuse_repeated_keys(bytes: &[u8]) -> Result<(), ApiError> {
    let repeated = RefCell::new(Vec::new());
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = RepeatedKeys {
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    let repeated = repeated.into_inner();
    match checked {
        Ok(()) => Ok(()),
        Err(_) if !repeated.is_empty() => Err(ApiError::validation(
            path_of(&repeated),
            "this key appears more than once in its object",
        )),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

/// `segments` innermost first, e.g. `["name", "[0]", "items"]` → `items[0].name`.
fn path_of(segments: &[String]) -> String {
    let mut path = String::new();
    for segment in segments.iter().rev() {
        if !path.is_empty() && !segment.starts_with('[') {
            path.push('.');
        }
        path.push_str(segment);
    }
    path
}

/// On the way out of a failed parse: adds the enclosing key or `[index]`
/// to the path of a repeated key, if one was found.
fn enclosing(repeated: &RefCell<Vec<String>>, segment: impl FnOnce() -> String) {
    let mut repeated = repeated.borrow_mut();
    if !repeated.is_empty() {
        repeated.push(segment());
    }
}

/// Checks a JSON document for repeated keys without building anything.
/// Records where one is: the key, then each enclosing key or `[index]` as
/// the error travels out.
#[derive(Clone, Copy)]
struct RepeatedKeys<'a> {
    repeated: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for RepeatedKeys<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RepeatedKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    enclosing(self.repeated, || format!("[{index}]"));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.iter().any(|k| k.as_str() == key.as_str()) {
                self.repeated.borrow_mut().push(key.as_str().to_string());
                return Err(de::Error::custom("repeated key"));
            }
            if let Err(e) = map.next_value_seed(self) {
                enclosing(self.repeated, || key.as_str().to_string());
                return Err(e);
            }
            keys.push(key);
        }
        Ok(())
    }
}

/// An object key, borrowed from the body unless it has escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_string()))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for TypedBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_typed(&read_bytes(req, state).await?).map(TypedBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = read_value(req, state).await?;
        from_value(value).map(JsonBody)
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match read_value(req, state).await? {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::validation("", "the body must be a JSON object")),
        }
    }
}

/// Deserializes `value` into `T`, mapping errors to a 422 naming the field.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        field_error(path, err.into_inner().to_string())
    })
}

fn field_error(path: String, message: String) -> ApiError {
    let named = field_in_message(&message);
    let field = match named {
        _ if path == "." => named.unwrap_or_default(),
        // A missing field is reported at its parent (an unknown one at itself).
        Some(name) if message.starts_with("missing field") => format!("{path}.{name}"),
        _ => path,
    };
    ApiError::validation(field, message)
}

/// serde reports unknown and missing fields at their parent's path; name the
/// field itself (`items[0].name`).
fn field_in_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest[..rest.find('`')?].to_string())
}

/// PATCH semantics: the stored resource, rendered as its input type, with the
/// patch's keys laid over it, then parsed and validated as a whole. A key set
/// to `null` clears a nullable field; an unknown key is a 422.
pub fn merge_patch<I: Serialize + DeserializeOwned>(
    current: &I,
    patch: serde_json::Map<String, Value>,
) -> Result<I, ApiError> {
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "input type is not an object"
            )))
        }
        Err(e) => {
            return Err(ApiError::Internal(
                anyhow::Error::new(e).context("rendering resource"),
            ))
        }
    };
    merged.extend(patch);
    from_value(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Serialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Input {
        name: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        limit: Option<rust_decimal::Decimal>,
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation { field, .. } => field,
            other => format!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let err =
            from_value::<Input>(serde_json::json!({"name": "a", "tags": ["x", 3]})).unwrap_err();
        assert_eq!(field_of(err), "tags[1]");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = from_value::<Input>(serde_json::json!({"name": "a", "bogus": 1})).unwrap_err();
        assert_eq!(field_of(err), "bogus");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = from_value::<Input>(serde_json::json!({"tags": []})).unwrap_err();
        assert_eq!(field_of(err), "name");
    }

    #[test]
    fn decimals_accept_numbers_and_strings() {
        let a: Input = from_value(serde_json::json!({"name": "a", "limit": 0.1})).unwrap();
        let b: Input = from_value(serde_json::json!({"name": "a", "limit": "0.1"})).unwrap();
        assert_eq!(a.limit, b.limit);
        assert_eq!(a.limit.unwrap().to_string(), "0.1");
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for (doc, field) in [
            (r#"{"name":"a","name":"b"}"#, "name"),
            (r#"{"a":{"b":[1,{"c":1,"c":2}]}}"#, "a.b[1].c"),
            (r#"[{"x":1},{"y":1,"y":1}]"#, "[1].y"),
        ] {
            assert_eq!(
                field_of(parse_strict(doc.as_bytes()).unwrap_err()),
                field,
                "{doc}"
            );
        }
        let value =
            parse_strict(br#"{"a":{"a":1},"b":[{"a":1},{"a":2.5}],"c":null,"d":-1}"#).unwrap();
        assert_eq!(value["b"][1]["a"], 2.5);
        assert_eq!(value["d"], -1);
        assert!(matches!(
            parse_strict(br#"{"a":1} x"#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_strict(b"{\"a\":"),
            Err(ApiError::BadRequest(_))
        ));
    }

    /// The typed path gives the answers of the Value path.
    #[test]
    fn typed_parsing_follows_the_same_rules() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Outer {
            #[allow(dead_code)]
            items: Vec<Input>,
        }
        let message = |err: ApiError| match err {
            ApiError::Validation { message, .. } => message,
            other => format!("{other:?}"),
        };
        for (doc, field) in [
            (r#"{"items":[{"name":"a","name":"b"}]}"#, "items[0].name"),
            (
                r#"{"items":[{"name":"a","tags":["x",3]}]}"#,
                "items[0].tags[1]",
            ),
            (r#"{"items":[{"name":"a","bogus":1}]}"#, "items[0].bogus"),
            (r#"{"items":[{"tags":[]}]}"#, "items[0].name"),
            (r#"{"items":[],"items":[]}"#, "items"),
            (
                r#"{"items":[{"name":"a","tags":[],"limit":{"x":1,"\u0078":2}}]}"#,
                "items[0].limit.x",
            ),
        ] {
            assert_eq!(
                field_of(parse_typed::<Outer>(doc.as_bytes()).unwrap_err()),
                field,
                "{doc}"
            );
        }
        let err = parse_typed::<Outer>(br#"{"items":[{"name":1}]}"#).unwrap_err();
        assert!(!message(err).contains(" at line "));
        for bad in [&br#"{"items":[]} x"#[..], b"{\"items\":"] {
            assert!(matches!(
                parse_typed::<Outer>(bad),
                Err(ApiError::BadRequest(_))
            ));
        }
        let ok: Outer =
            parse_typed(br#"{"items":[{"name":"a","limit":"0.5"},{"name":"b"}]}"#).unwrap();
        assert_eq!(ok.items.len(), 2);
    }

    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!with("text/json"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn patch_overrides_and_clears() {
        let current = Input {
            name: "a".into(),
            tags: vec!["t".into()],
            limit: Some(1.into()),
        };
        let patch = serde_json::json!({"name": "b", "limit": null});
        let Value::Object(patch) = patch else {
            unreachable!()
        };
        let merged: Input = merge_patch(&current, patch).unwrap();
        assert_eq!(merged.name, "b");
        assert_eq!(merged.tags, vec!["t".to_string()]);
        assert_eq!(merged.limit, None);
    }
}
