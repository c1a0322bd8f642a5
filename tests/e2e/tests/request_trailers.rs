//! A request body that ends with trailers (HTTP/2) is inspected like any
//! other: its model is read and malformed JSON is still refused.

use std::time::Duration;

use bytes::Bytes;
use hubgate_e2e::{Stack, StackOptions};
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Sends `body` over h2c, ending the stream with a trailer; returns status
/// and response body.
async fn post_with_trailers(stack: &Stack, key: &str, request_id: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let addr = stack.gateway_url().trim_start_matches("http://").to_string();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from(body), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-client-trailer", http::HeaderValue::from_static("done"));
    send.send_trailers(trailers).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.unwrap().unwrap();
    let status = response.status().as_u16();
    let mut recv = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_ending_in_trailers_are_inspected() {
    let stack = Stack::start(StackOptions::new("request_trailers")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    let request_id = hubgate_e2e::uuid_v4();
    let body = serde_json::to_vec(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "with trailers")).unwrap();
    let (status, answer) = post_with_trailers(&stack, &key.raw, &request_id, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["original_model"], "claude-sonnet-4-5", "the body was not read: {row}");

    let (status, answer) = post_with_trailers(&stack, &key.raw, &hubgate_e2e::uuid_v4(), b"{\"model\": oops".to_vec()).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_json", "{answer}");
}
