//! A policy snapshot compiled once per version: price table, provider
//! upstream targets. Requests only read it.

use hubgate_wire::{PolicySnapshot, Provider, Settings};

use crate::cost::PriceTable;
use crate::guards::client_version::GaVersions;
use crate::guards::redirect::Redirects;
use crate::guards::request_filters::RequestFilters;
use crate::guards::sensitive_words::SensitiveWords;
use crate::locale::Locale;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub tls: bool,
    /// `host` or `host:port`, written to `:authority`.
    pub authority: String,
    /// Path prefix from the base URL, without trailing `/` (often empty).
    pub path_prefix: String,
}

impl UpstreamTarget {
    pub fn parse(base_url: &str) -> Result<UpstreamTarget, String> {
        let (tls, rest) = if let Some(rest) = base_url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = base_url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("base_url `{base_url}` must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
            return Err(format!("base_url `{base_url}` has no usable host"));
        }
        Ok(UpstreamTarget { tls, authority: authority.to_string(), path_prefix: path.trim_end_matches('/').to_string() })
    }
}

#[derive(Debug, Clone)]
pub struct CompiledProvider {
    pub provider: Provider,
    pub target: UpstreamTarget,
    pub redirects: Redirects,
}

#[derive(Debug)]
pub struct CompiledSnapshot {
    pub version: u64,
    pub key_epoch: u64,
    pub settings: Settings,
    pub locale: Locale,
    pub prices: PriceTable,
    pub providers: Vec<CompiledProvider>,
    pub ga_versions: GaVersions,
    pub sensitive_words: SensitiveWords,
    pub request_filters: RequestFilters,
}

impl CompiledSnapshot {
    /// Compiles a snapshot. Providers that cannot be used are left out and
    /// described in the returned warnings; the rest still work.
    pub fn compile(snapshot: PolicySnapshot) -> (CompiledSnapshot, Vec<String>) {
        let mut warnings = Vec::new();
        let mut providers = Vec::with_capacity(snapshot.providers.len());
        for provider in snapshot.providers {
            match UpstreamTarget::parse(&provider.base_url) {
                Ok(target) => {
                    let (redirects, redirect_warnings) = Redirects::compile(&provider.model_redirects);
                    warnings.extend(redirect_warnings.into_iter().map(|w| format!("provider {}: {w}", provider.id)));
                    providers.push(CompiledProvider { provider, target, redirects });
                }
                Err(e) => warnings.push(format!("provider {} ({}) skipped: {e}", provider.id, provider.name)),
            }
        }
        let (ga_versions, ga_warnings) = GaVersions::compile(&snapshot.client_versions);
        warnings.extend(ga_warnings);
        let (sensitive_words, word_warnings) = SensitiveWords::compile(&snapshot.sensitive_words);
        warnings.extend(word_warnings);
        let (request_filters, filter_warnings) = RequestFilters::compile(&snapshot.request_filters);
        warnings.extend(filter_warnings);
        let compiled = CompiledSnapshot {
            version: snapshot.version,
            key_epoch: snapshot.key_epoch,
            locale: Locale::parse(&snapshot.settings.locale),
            settings: snapshot.settings,
            prices: PriceTable::compile(&snapshot.prices),
            providers,
            ga_versions,
            sensitive_words,
            request_filters,
        };
        (compiled, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        assert_eq!(
            UpstreamTarget::parse("https://api.anthropic.com").unwrap(),
            UpstreamTarget { tls: true, authority: "api.anthropic.com".into(), path_prefix: "".into() }
        );
        assert_eq!(
            UpstreamTarget::parse("http://127.0.0.1:8080/relay/").unwrap(),
            UpstreamTarget { tls: false, authority: "127.0.0.1:8080".into(), path_prefix: "/relay".into() }
        );
        assert!(UpstreamTarget::parse("ftp://x").is_err());
        assert!(UpstreamTarget::parse("http://").is_err());
        assert!(UpstreamTarget::parse("http://user@host").is_err());
    }
}
