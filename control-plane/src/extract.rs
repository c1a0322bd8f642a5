//! Request body parsing. Bodies are strict (`deny_unknown_fields` on every
//! input type) and a type error names the offending field, e.g.
//! `allowed_models[3]`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::errors::ApiError;

/// A JSON body deserialized into `T`; 400 when it is not JSON, 422 naming
/// the field when it does not fit `T`.
pub struct JsonBody<T>(pub T);

/// A JSON object body, kept as a map (used by PATCH, see [`merge_patch`]).
pub struct JsonObject(pub serde_json::Map<String, Value>);

async fn read_value<S: Send + Sync>(req: Request, state: &S) -> Result<Value, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
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
        let message = err.into_inner().to_string();
        let field = if path == "." {
            field_in_message(&message).unwrap_or_default()
        } else {
            path
        };
        ApiError::validation(field, message)
    })
}

/// serde reports unknown and missing fields at their parent's path; name the
/// field itself.
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
