//! hubgate control plane: admin API, internal API for the filter, migrations
//! and the `hubgate-cp` CLI (see `main.rs`).

pub mod admin;
pub mod app;
pub mod auth;
pub mod background;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod errors;
pub mod extract;
pub mod internal;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod prices;
pub mod retention;
pub mod throttle;
pub mod ui;
pub mod validate;

pub use app::Application;
pub use config::Config;
