//! What kind of API call a request is, from its path alone.

/// The client's API dialect, which shapes local error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Anthropic,
    OpenAi,
    Gemini,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// `POST /v1/messages`
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`
    AnthropicCountTokens,
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/responses`
    OpenAiResponses,
    /// `/v1beta/models/{model}:generateContent` and friends.
    Gemini { stream: bool, conversation: bool },
    /// Anything else (e.g. `GET /v1/models`).
    #[default]
    Other,
}

impl Endpoint {
    /// Classifies a path (query string ignored).
    pub fn from_path(path: &str) -> Endpoint {
        let path = path_without_query(path).trim_end_matches('/');
        match path {
            "/v1/messages" => Endpoint::AnthropicMessages,
            "/v1/messages/count_tokens" => Endpoint::AnthropicCountTokens,
            "/v1/chat/completions" => Endpoint::OpenAiChat,
            "/v1/responses" => Endpoint::OpenAiResponses,
            _ => match gemini_model_and_method(path) {
                Some((_, method)) => Endpoint::Gemini {
                    stream: method == "streamGenerateContent",
                    conversation: method == "generateContent" || method == "streamGenerateContent",
                },
                None => Endpoint::Other,
            },
        }
    }

    /// Conversation endpoints are billed and limited; the rest pass through
    /// with auth, client, model and provider checks only.
    pub fn is_conversation(self) -> bool {
        match self {
            Endpoint::AnthropicMessages | Endpoint::OpenAiChat | Endpoint::OpenAiResponses => true,
            Endpoint::Gemini { conversation, .. } => conversation,
            Endpoint::AnthropicCountTokens | Endpoint::Other => false,
        }
    }
}

impl Dialect {
    pub fn from_path(path: &str) -> Dialect {
        let p = path_without_query(path);
        match Endpoint::from_path(p) {
            Endpoint::OpenAiChat | Endpoint::OpenAiResponses => Dialect::OpenAi,
            Endpoint::Gemini { .. } => Dialect::Gemini,
            Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => Dialect::Anthropic,
            Endpoint::Other if p.starts_with("/v1beta/") => Dialect::Gemini,
            Endpoint::Other
                if p.starts_with("/v1/chat/")
                    || p.starts_with("/v1/completions")
                    || p.starts_with("/v1/embeddings")
                    || p.starts_with("/v1/responses/") =>
            {
                Dialect::OpenAi
            }
            Endpoint::Other => Dialect::Anthropic,
        }
    }
}

pub fn path_without_query(path: &str) -> &str {
    match path.find('?') {
        Some(i) => path.get(..i).unwrap_or(path),
        None => path,
    }
}

/// `/v1beta/models/gemini-2.5-pro:generateContent` → (`gemini-2.5-pro`, `generateContent`).
pub fn gemini_model_and_method(path: &str) -> Option<(&str, &str)> {
    let path = path_without_query(path);
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    Some((model, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(Endpoint::from_path("/v1/messages?beta=true"), Endpoint::AnthropicMessages);
        assert_eq!(Endpoint::from_path("/v1/messages/count_tokens"), Endpoint::AnthropicCountTokens);
        assert_eq!(Endpoint::from_path("/v1/responses"), Endpoint::OpenAiResponses);
        assert_eq!(
            Endpoint::from_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            Endpoint::Gemini { stream: true, conversation: true }
        );
        assert_eq!(Endpoint::from_path("/v1/models"), Endpoint::Other);
        assert!(!Endpoint::AnthropicCountTokens.is_conversation());
    }

    #[test]
    fn dialects() {
        assert_eq!(Dialect::from_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::from_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(Dialect::from_path("/v1beta/models"), Dialect::Gemini);
        assert_eq!(Dialect::from_path("/v1beta/models/x:countTokens"), Dialect::Gemini);
        assert_eq!(Dialect::from_path("/whatever"), Dialect::Anthropic);
    }

    #[test]
    fn gemini_model() {
        assert_eq!(
            gemini_model_and_method("/v1beta/models/gemini-3-pro-preview:generateContent"),
            Some(("gemini-3-pro-preview", "generateContent"))
        );
        assert_eq!(gemini_model_and_method("/v1beta/models"), None);
    }
}
