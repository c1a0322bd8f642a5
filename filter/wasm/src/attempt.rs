//! The filter of Envoy's attempt listener (root id `hubgate_attempt`), one
//! run per failover attempt (core `guards::failover`): it reads which
//! candidate this attempt is for, runs the attempt chain and sends the
//! request there; its answer names the provider that served. The provider's
//! circuit breaker counts every attempt. Same VM as the gateway's filter:
//! it reads the policy snapshot that filter publishes in shared data.

use std::rc::Rc;

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::chain::{self, Cx, Exchange, Verdict};
use hubgate_core::guards::failover::{self, Served};
use hubgate_core::guards::provider;
use hubgate_core::headers::Headers;
use hubgate_core::locale::{localize, Locale};
use hubgate_core::reply::LocalReply;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

use crate::host;
use crate::http::{apply, apply_filter_edits};
use crate::vm::Vm;

pub const ROOT_ID: &str = "hubgate_attempt";

#[derive(Default)]
pub struct AttemptRoot {
    vm: Option<Rc<Vm>>,
}

impl Context for AttemptRoot {}

impl RootContext for AttemptRoot {
    /// Its configuration is an empty JSON object: everything comes from the
    /// request and the published snapshot.
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size);
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AttemptConfig {}
        let text = String::from_utf8_lossy(&bytes);
        let parsed = match text.trim() {
            "" => Ok(AttemptConfig {}),
            json => serde_json::from_str::<AttemptConfig>(json),
        };
        if let Err(e) = parsed {
            log::error!("invalid attempt filter configuration (an empty object is expected): {e}");
            return false;
        }
        self.vm = Some(Rc::new(Vm::for_attempts()));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Attempt { vm: self.vm.clone(), ..Attempt::default() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Default)]
struct Attempt {
    vm: Option<Rc<Vm>>,
    ex: Exchange,
    body_size: usize,
    decided: bool,
    /// Answered here (no plan for this attempt).
    answered: bool,
    status: Option<u16>,
    /// Envoy answered by itself (provider unreachable, first-byte timeout).
    envoy_error: Option<LocalReply>,
}

impl Attempt {
    fn locale(&self) -> Locale {
        self.ex.snapshot.as_ref().map_or(Locale::En, |s| s.locale)
    }

    fn advance(&mut self) -> Action {
        let Some(vm) = self.vm.clone() else {
            return self.send(LocalReply::new(503, "filter_not_configured", "The gateway filter is not configured."));
        };
        let mut cx = Cx { host: vm.as_ref(), vm: &vm.state, ex: &mut self.ex, background: Vec::new() };
        match chain::run_attempt(&mut cx) {
            Verdict::NeedBody => Action::Pause,
            Verdict::Forward => {
                apply_filter_edits(&self.ex, self.body_size);
                if let Some(plan) = &self.ex.plan {
                    apply(plan, &self.ex.headers);
                }
                self.ex.body = None;
                self.decided = true;
                Action::Continue
            }
            Verdict::Answer(reply) => self.send(reply),
            // The attempt chain neither calls out nor makes up answers.
            Verdict::Call(_) | Verdict::Respond(_) => {
                self.send(LocalReply::new(500, "guard_failed", "The gateway could not check this request."))
            }
        }
    }

    fn send(&mut self, reply: LocalReply) -> Action {
        let reply = localize(reply, self.locale());
        let body = reply.body(self.ex.dialect, &self.ex.request_id);
        host::send_reply(reply.status, &reply.response_headers(&self.ex.request_id), &body);
        self.decided = true;
        self.answered = true;
        Action::Pause
    }
}

impl Context for Attempt {}

impl HttpContext for Attempt {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let headers = Headers::new(host::request_headers());
        let path = headers.get(":path").unwrap_or("/").to_string();
        let attempt_provider = match (headers.get(failover::ATTEMPT_HEADER), headers.get(failover::ATTEMPT_COUNT_HEADER)) {
            (Some(list), Some(count)) => failover::candidate(list, count),
            _ => None,
        };
        for name in [failover::ATTEMPT_HEADER, failover::ATTEMPT_COUNT_HEADER] {
            host::set_request_header(name, None);
        }
        self.ex = Exchange {
            request_id: headers.get("x-request-id").unwrap_or("").to_string(),
            method: headers.get(":method").unwrap_or("").to_string(),
            endpoint: Endpoint::from_path(&path),
            dialect: Dialect::from_path(&path),
            body: end_of_stream.then(Vec::new),
            snapshot: self.vm.as_ref().and_then(|vm| vm.snapshot()),
            attempt_provider,
            path,
            headers,
            ..Exchange::default()
        };
        if let Some(vm) = &self.vm {
            vm.metrics.inc("hubgate_failover_attempts_total");
        }
        self.advance()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.body_size = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        self.ex.body = Some(host::buffer(BufferType::HttpRequestBody, body_size));
        self.advance()
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        self.status = host::response_header(":status").and_then(|s| s.parse().ok());
        let Some(plan) = &self.ex.plan else { return Action::Continue };
        let served = Served { provider_id: plan.provider_id, usage_added: self.ex.usage_added, model: plan.model.clone() };
        host::set_response_header(failover::SERVED_HEADER, Some(&served.encode()));
        let status = self.status.unwrap_or(0);
        if status >= 400 && !end_of_stream {
            let details = host::property(&["response", "code_details"]).unwrap_or_default();
            if !details.is_empty() && details != "via_upstream" {
                // Envoy answered by itself: in the client's dialect, so the
                // client gets that if this was the last attempt.
                let reply = localize(provider::upstream_failed(status, &details), self.locale());
                for (name, value) in reply.response_headers(&self.ex.request_id) {
                    host::set_response_header(&name, Some(&value));
                }
                host::set_response_header("content-length", None);
                self.envoy_error = Some(reply);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(reply) = &self.envoy_error else { return Action::Continue };
        if !end_of_stream {
            return Action::Pause;
        }
        host::replace_response_body(body_size, &reply.body(self.ex.dialect, &self.ex.request_id));
        Action::Continue
    }

    /// The provider's answer counts for its circuit breaker, whether or not
    /// another attempt follows.
    fn on_log(&mut self) {
        if self.answered {
            return;
        }
        crate::http::record_circuit(&self.ex, self.status);
    }
}
