//! Envoy plugin configuration: `hubgate_core::config::PluginConfig::parse`
//! on arbitrary bytes (the input is the whole configuration).
#![no_main]

use hubgate_core::config::PluginConfig;
use hubgate_fuzz::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match PluginConfig::parse(data) {
        Ok(c) => {
            check(!c.internal_token_env.is_empty() && !c.control_plane_cluster.is_empty(), "validation let an empty field through", &c);
            check(c.poll_interval_ms >= 50 && c.callout_timeout_ms > 0 && c.max_body_bytes > 0, "validation let a zero through", &c);
            check((1..=1000).contains(&c.event_batch_max) && c.event_queue_max > 0, "validation let a batch size through", &c);
            check((1..=1 << 20).contains(&c.lockout_buckets), "validation let a bucket count through", &c);
            let p = c.lockout_policy();
            check(p.window_ms > 0 && p.lockout_ms >= 0 && p.max_failures > 0, "lockout policy out of range", &(&c, p));
        }
        Err(e) => check(e.starts_with("invalid plugin configuration: "), "error does not say what it is", &e),
    }
});
