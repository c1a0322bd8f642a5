//! Integration tests: each starts `Application::build` on port 0 against a
//! fresh database and drives it over HTTP.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bodies;
mod circuits;
mod cli;
mod events;
mod internal;
mod jobs;
mod keys;
mod leases;
mod names;
mod openapi;
mod overview;
mod own_records;
mod prices;
mod providers;
mod request_log;
mod requests;
mod resources;
mod retention;
mod secrets;
mod sessions;
mod shares;
mod throttle;
mod ui_session;
mod usage;
mod users;
mod validation;
mod word_test;
