//! The guards of the chain (SPEC §2), one module per guard; their order is
//! `chain::GUARDS`. Wired so far: body size, 1 auth (with the brute-force
//! lockout and the pending-auth bound), route (policy, path), 3 client,
//! 5 client version, body (parse), 2 sensitive words, 4 model, 6 warmup,
//! 7 session (id discovery), 8 request filters (global), remembering the
//! body's parts (seen_parts), 9 rate limits (cost quotas through leases,
//! `quota`; session concurrency and a user's `rpm`, across instances through
//! shares, `share`), 10 provider selection, then
//! the provider-bound request filters, then asking OpenAI Chat streams for
//! their usage (`stream_usage`).

pub mod auth;
pub mod body;
pub mod body_size;
pub mod circuit;
pub mod client;
pub mod client_version;
pub mod eligibility;
pub mod failover;
pub mod lockout;
pub mod model;
pub mod pending_auth;
pub mod rate_limit;
pub mod provider;
pub mod quota;
pub mod redirect;
pub mod request_filters;
pub mod route;
pub mod seen_parts;
pub mod sensitive_words;
pub mod session;
pub mod share;
pub mod sticky;
pub mod stream_usage;
pub mod warmup;
