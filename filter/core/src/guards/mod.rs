//! The guard chain (SPEC §2), one module per guard. Implemented so far:
//! 1 auth (with the brute-force lockout), 7 session (id discovery),
//! 10 provider selection.

pub mod auth;
pub mod lockout;
pub mod pending_auth;
pub mod provider;
pub mod sensitive_words;
pub mod session;
