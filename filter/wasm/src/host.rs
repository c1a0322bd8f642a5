//! Wrappers over proxy-wasm hostcalls that turn host errors into values. The
//! SDK's trait helpers unwrap them, and its string readers unwrap UTF-8; a
//! panic would kill the VM and every later request on its worker. (The raw
//! hostcalls still panic on statuses the ABI does not define.)

use std::time::{Duration, UNIX_EPOCH};

use hubgate_core::shared::{self, SetError, SharedData};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes, MapType, Status};

/// Host clock, unix milliseconds.
pub fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Host clock, unix nanoseconds (for unique ids and seeds).
pub fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// All request headers. Values are read as bytes: the SDK's string variant
/// unwraps UTF-8 and a client sending a Latin-1 header would panic the VM.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

fn map_value(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

pub fn response_header(name: &str) -> Option<String> {
    map_value(MapType::HttpResponseHeaders, name)
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("cannot set request header {name}: {e:?}");
    }
}

pub fn property(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn buffer(kind: BufferType, size: usize) -> Bytes {
    hostcalls::get_buffer(kind, 0, size).ok().flatten().unwrap_or_default()
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value) {
        log::warn!("cannot set response header {name}: {e:?}");
    }
}

/// Replaces the first `size` bytes of the (buffered) request body.
pub fn replace_request_body(size: usize, body: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body) {
        log::warn!("cannot replace the request body: {e:?}");
    }
}

/// Replaces the first `size` bytes of the (buffered) response body.
pub fn replace_response_body(size: usize, body: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body) {
        log::warn!("cannot replace the response body: {e:?}");
    }
}

pub fn call_response_status() -> Option<u16> {
    map_value(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.parse().ok())
}

pub fn send_reply(status: u16, headers: &[(String, String)], body: &[u8]) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Err(e) = hostcalls::send_http_response(u32::from(status), headers, Some(body)) {
        log::error!("cannot send local reply {status}: {e:?}");
    }
}

pub fn resume_request() {
    if let Err(e) = hostcalls::resume_http_request() {
        log::warn!("cannot resume request: {e:?}");
    }
}

/// Shared data (per Envoy process, all worker VMs) through hostcalls.
pub struct Shared;

impl SharedData for Shared {
    fn get(&self, key: &str) -> (Option<Bytes>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(e) => {
                log::warn!("shared data {key}: {e:?}");
                Err(SetError::Failed)
            }
        }
    }
}

pub fn shared_get(key: &str) -> (Option<Bytes>, Option<u32>) {
    Shared.get(key)
}

pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
    Shared.set(key, value, cas)
}

/// Read-modify-write of a shared value with CAS, retried a few times.
/// Returns the value written, or `None` if every attempt lost the race.
pub fn shared_update<T>(key: &str, update: impl FnMut(Option<&[u8]>) -> (T, Vec<u8>)) -> Option<T> {
    shared::update(&Shared, key, update)
}

/// An environment variable of the Envoy process that the VM config exposes
/// (`vm_config.environment_variables.host_env_keys`).
pub fn env_var(name: &str) -> Option<String> {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    {
        wasi_env::var(name)
    }
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        std::env::var(name).ok()
    }
}

/// `wasm32-unknown-unknown` has no environment in std; Envoy still serves
/// the WASI environment calls to every module.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod wasi_env {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn environ_sizes_get(count: *mut usize, buf_size: *mut usize) -> u16;
        fn environ_get(environ: *mut *mut u8, buf: *mut u8) -> u16;
    }

    pub fn var(name: &str) -> Option<String> {
        let mut count = 0usize;
        let mut size = 0usize;
        // SAFETY: both out-pointers point at live locals.
        if unsafe { environ_sizes_get(&mut count, &mut size) } != 0 {
            return None;
        }
        let mut pointers: Vec<*mut u8> = vec![std::ptr::null_mut(); count];
        let mut buf = vec![0u8; size];
        // SAFETY: the host writes `count` pointers and `size` bytes, the
        // sizes it just reported.
        if unsafe { environ_get(pointers.as_mut_ptr(), buf.as_mut_ptr()) } != 0 {
            return None;
        }
        let prefix = format!("{name}=");
        buf.split(|b| *b == 0)
            .filter_map(|entry| entry.strip_prefix(prefix.as_bytes()))
            .find_map(|value| String::from_utf8(value.to_vec()).ok())
    }
}

/// Starts an HTTP callout; the answer arrives in `on_http_call_response`.
pub fn dispatch(cluster: &str, headers: Vec<(&str, &str)>, body: Option<&[u8]>, timeout_ms: u64) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, body, vec![], Duration::from_millis(timeout_ms))
}
