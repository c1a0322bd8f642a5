//! hubgate's proxy-wasm filter: thin glue between Envoy and `hubgate-core`.
//! Decisions live in the core crate; this crate copies data in and out of
//! the host, holds requests while callouts run, and queues usage events.

mod events;
mod host;
mod http;
mod root;
mod vm;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::<root::Root>::default() });
}}
