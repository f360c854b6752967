//! A model endpoint without the internet: a small OpenAI-compatible server (hyper), on a pod-like address in the
//! test's network namespace, as a private model endpoint (vLLM, Ollama, Nutanix Enterprise AI) would be.
//!
//! - `POST /v1/chat/completions`: [`REPLY`], streamed as server-sent events a word at a time with a pause between
//!   them (`stream: true`), or whole. When the prompt carries a knowledge base's context, the reply quotes the
//!   line of it that holds [`CONTEXT_MARKER`], so a chat shows what was retrieved.
//! - `POST /v1/embeddings`: a deterministic vector of [`EMBEDDING_DIMENSIONS`] per input, from the text's words.
//! - `GET /v1/models`: the model names.
//! - `GET /packages/<file>`: a file of the directory given at start, as an artifact server of the cluster's network
//!   hands a plugin package to an air-gapped install.
//!
//! Every request's path and JSON body are kept, for the test to check what Dify sent.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, channel::Channel, combinators::BoxBody};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::cluster_dns::ClusterDns;
use crate::support::traefik::StubNet;

/// What the chat model says (the test looks for it in the browser).
pub const REPLY: &str = "The harness model answers from a private address.";
/// A word the knowledge base's document holds: the reply quotes the context line that contains it.
pub const CONTEXT_MARKER: &str = "Zanzibar-7";
pub const EMBEDDING_DIMENSIONS: usize = 16;
/// The names the provider is configured with.
pub const CHAT_MODEL: &str = "harness-chat";
pub const EMBEDDING_MODEL: &str = "harness-embedding";
/// The model added on a server whose address the SSRF proxy's allow-list does not admit.
pub const UNLISTED_MODEL: &str = "harness-unlisted";

pub struct ModelServer {
    /// `http://<host>:<port>/v1`, the provider's endpoint URL.
    pub url: String,
    /// How the release names it: its address, or `<service>.<namespace>` once [`ModelServer::serve_as`] named it.
    pub host: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    /// (path, JSON body) of every request, in order.
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl ModelServer {
    /// Serves on `ip:port` inside `net`, with the files of `packages` under `/packages/`.
    pub fn start(net: &StubNet, ip: Ipv4Addr, port: u16, packages: &Path) -> ModelServer {
        let listener = net.bind(ip, port).unwrap_or_else(|e| panic!("binding the model server on {ip}:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let packages = packages.to_path_buf();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (seen, packages) = (seen.clone(), packages.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, seen.clone(), packages.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let addr = SocketAddr::from((ip, port));
        ModelServer { url: format!("http://{addr}/v1"), host: ip.to_string(), ip, port, requests, _runtime: runtime }
    }

    /// Names the server Service `service` of `namespace` in the cluster's DNS; the release then reaches it as a pod of
    /// another namespace names a Service, `<service>.<namespace>` (which resolves through the pod's search list).
    pub fn serve_as(&mut self, dns: &ClusterDns, service: &str, namespace: &str) {
        dns.add_service(self.ip, service, namespace);
        self.host = format!("{service}.{namespace}");
        self.url = format!("http://{}:{}/v1", self.host, self.port);
    }

    /// How many requests reached this server.
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The requests so far to `path` (e.g. `/v1/chat/completions`), their JSON bodies.
    pub fn requests_to(&self, path: &str) -> Vec<Value> {
        self.requests.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    packages: PathBuf,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/packages/").filter(|n| !n.contains('/') && !n.starts_with('.')) {
        seen.lock().unwrap().push((path.clone(), Value::Null));
        return Ok(match std::fs::read(packages.join(name)) {
            Ok(bytes) => Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Full::new(Bytes::from(bytes)).boxed())
                .unwrap(),
            Err(_) => json_response(StatusCode::NOT_FOUND, json!({"error": {"message": format!("no file {name}")}})),
        });
    }
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    seen.lock().unwrap().push((path.clone(), body.clone()));
    Ok(match path.as_str() {
        "/v1/models" => json_response(
            StatusCode::OK,
            json!({"object": "list", "data": [
                {"id": CHAT_MODEL, "object": "model", "owned_by": "harness"},
                {"id": EMBEDDING_MODEL, "object": "model", "owned_by": "harness"},
            ]}),
        ),
        "/v1/embeddings" => {
            let inputs: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
                _ => vec![],
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embedding(text)}))
                .collect();
            let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
            json_response(
                StatusCode::OK,
                json!({"object": "list", "data": data, "model": body["model"],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
            )
        }
        "/v1/chat/completions" => chat(&body),
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": {"message": format!("no route {path}")}})),
    })
}

/// The reply to a chat request: [`REPLY`], then the context line holding [`CONTEXT_MARKER`] when the prompt has one.
fn reply_to(body: &Value) -> String {
    let prompt: String = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    match prompt.lines().find(|l| l.contains(CONTEXT_MARKER)) {
        Some(line) => format!("{REPLY} Context: {}", line.trim()),
        None => REPLY.to_string(),
    }
}

fn chat(body: &Value) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or(CHAT_MODEL).to_string();
    let text = reply_to(body);
    let usage = json!({"prompt_tokens": 10, "completion_tokens": text.split_whitespace().count(),
                       "total_tokens": 10 + text.split_whitespace().count()});
    if body["stream"] != true {
        return json_response(
            StatusCode::OK,
            json!({"id": "chatcmpl-harness", "object": "chat.completion", "created": 0, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop"}],
                   "usage": usage}),
        );
    }
    // Streamed: a chunk per word, with a pause, so that what reaches the browser really arrives in pieces.
    let (mut sender, channel) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value| {
            let event = json!({"id": "chatcmpl-harness", "object": "chat.completion.chunk", "created": 0,
                               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            Bytes::from(format!("data: {event}\n\n"))
        };
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        for (i, word) in words.iter().enumerate() {
            let delta = if i == 0 { json!({"role": "assistant", "content": word}) } else { json!({"content": word}) };
            if sender.send_data(chunk(delta, Value::Null)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let _ = sender.send_data(chunk(json!({}), json!("stop"))).await;
        let usage_event = json!({"id": "chatcmpl-harness", "object": "chat.completion.chunk", "created": 0,
                                 "model": "", "choices": [], "usage": usage});
        let _ = sender.send_data(Bytes::from(format!("data: {usage_event}\n\n"))).await;
        let _ = sender.send(Frame::data(Bytes::from("data: [DONE]\n\n"))).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(channel.boxed())
        .unwrap()
}

/// A unit vector from the text's words (hashed into buckets): texts sharing words are near each other.
fn embedding(text: &str) -> Vec<f64> {
    let mut v = vec![0.0f64; EMBEDDING_DIMENSIONS];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word.to_lowercase().bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        v[hash as usize % EMBEDDING_DIMENSIONS] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
        return v;
    }
    v.iter().map(|x| x / norm).collect()
}

#[test]
fn embeddings_are_unit_vectors_and_the_reply_quotes_the_context() {
    let v = embedding("the Zanzibar-7 ledger");
    assert_eq!(v.len(), EMBEDDING_DIMENSIONS);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-9);
    let body = json!({"messages": [{"role": "system", "content": "Use this context:\nThe code is Zanzibar-7.\n"},
                                   {"role": "user", "content": "What is the code?"}]});
    assert_eq!(reply_to(&body), format!("{REPLY} Context: The code is Zanzibar-7."));
    assert_eq!(reply_to(&json!({"messages": [{"role": "user", "content": "hi"}]})), REPLY);
}
