//! hubgate's proxy-wasm filter: thin glue between Envoy and `hubgate-core`.
//! Decisions live in the core crate; this crate copies data in and out of
//! the host, holds requests while callouts run, and queues usage events.

mod attempt;
mod events;
mod host;
mod http;
mod profile;
mod root;
mod vm;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    // A panic aborts the VM (and fails the requests it would have served):
    // at least say where.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(proxy_wasm::types::LogLevel::Critical, &format!("hubgate panicked: {info}"));
    }));
    // The attempt listener's filter (failover) is this same code under
    // another root id.
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        match host::property(&["plugin_root_id"]) {
            Some(id) if id == attempt::ROOT_ID => Box::<attempt::AttemptRoot>::default(),
            _ => Box::<root::Root>::default(),
        }
    });
}}
