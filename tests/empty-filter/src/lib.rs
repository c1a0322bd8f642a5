//! The floor of any body-reading proxy-wasm filter, for `tests/bench`: it
//! does what hubgate must do before it can decide anything about a request
//! body, and nothing else. On request headers it pauses (Envoy's config sets
//! `allow_on_headers_stop_iteration: true`), lets Envoy buffer the body until
//! end of stream, reads the whole body once with `get_buffer` (as hubgate
//! does), then lets the request continue. No root logic, no logging, no
//! response callbacks.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(EmptyFilter::default()) });
}}

/// One request.
#[derive(Debug, Default)]
pub struct EmptyFilter {
    /// Bytes of body Envoy has buffered so far.
    body_size: usize,
    /// The body was read (or there was none): nothing left to do.
    done: bool,
}

impl EmptyFilter {
    /// Reads the whole buffered request body once, like hubgate, and lets
    /// the request go on.
    fn read_body(&mut self) -> Action {
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size).ok().flatten();
        std::hint::black_box(body.as_ref().map_or(0, Vec::len));
        self.done = true;
        Action::Continue
    }
}

impl Context for EmptyFilter {}

impl HttpContext for EmptyFilter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            // No body: nothing to wait for.
            self.done = true;
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.done {
            return Action::Continue;
        }
        self.body_size = body_size;
        if !end_of_stream {
            // Envoy keeps buffering the body until end of stream.
            return Action::Pause;
        }
        self.read_body()
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if self.done {
            return Action::Continue;
        }
        // The body ended with trailers instead of end_of_stream.
        self.read_body()
    }
}
