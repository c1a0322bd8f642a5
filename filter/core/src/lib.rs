//! hubgate's decision logic, free of any proxy-wasm host: everything here is
//! tested natively. The `hubgate-filter` cdylib maps Envoy callbacks onto it.

pub mod api;
pub mod billing;
pub mod body_text;
pub mod chain;
pub mod clip;
pub mod config;
pub mod cost;
pub mod event_depth;
pub mod events;
pub mod guards;
pub mod hash;
pub mod headers;
pub mod idle;
pub mod keys;
pub mod locale;
pub mod path;
pub mod regex_literals;
pub mod reply;
pub mod request;
pub mod segments;
pub mod shared;
pub mod snapshot;
pub mod snapshot_store;
pub mod time;
pub mod usage;
pub mod user_agent;
