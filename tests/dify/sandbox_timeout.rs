//! The code sandbox ends a snippet that outlives its `WORKER_TIMEOUT`. The sandbox (root, with the capabilities the
//! chart gives it) runs each snippet in a child that chroots and takes an unprivileged uid; at the timeout it kills
//! that child, and root may signal another uid's process only with CAP_KILL. Without it the kill fails, the request
//! never ends (the sandbox waits for the snippet's output to close), and the snippet runs on, holding one of the
//! sandbox's workers, until the pod restarts.
//!
//! The check asks the sandbox as Dify's api does (`POST /v1/sandbox/run`, the release's key in `X-Api-Key`, network
//! on as api always asks) to run a loop that never ends, then looks for that loop among the sandbox's processes.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::credentials::ids_of;
use crate::install::Install;
use crate::pods::descendants;

/// What the sandbox answered for the endless snippet, and how long it took.
pub struct Ended {
    pub error: String,
    pub answered_after: Duration,
}

/// Runs the endless snippet and checks that it is ended: the sandbox answers with a timeout within its
/// `WORKER_TIMEOUT` and some slack, and no process of the snippet's uid is left under the sandbox.
pub fn check_code_past_its_timeout_is_ended(install: &mut Install) -> Ended {
    let sandbox = install.release.containers("dify-sandbox", false).into_iter().next().expect("a sandbox container");
    let env = |name: &str| {
        sandbox
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the sandbox container has no {name}"))
    };
    let (key, timeout) = (env("API_KEY"), env("WORKER_TIMEOUT"));
    let timeout = Duration::from_secs(timeout.parse().unwrap_or_else(|_| panic!("WORKER_TIMEOUT {timeout:?}")));
    let port = *sandbox.ports.values().next().expect("the sandbox's port");
    let ip = install.addresses["dify-sandbox"];
    let sandbox_pid = install.pid_of("dify-sandbox");
    let body = json!({"language": "python3", "code": "while True:\n    pass\n", "preload": "", "enable_network": true});
    let started = Instant::now();
    let answer = post_json(ip, port, "/v1/sandbox/run", &key, &body, timeout + Duration::from_secs(30));
    let answered_after = started.elapsed();
    // The snippet's processes: the sandbox's descendants that left root for the sandbox's code user.
    let snippets = || -> Vec<u32> {
        descendants(sandbox_pid).into_iter().filter(|pid| ids_of(*pid).is_some_and(|ids| ids.uid != 0)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !snippets().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = snippets();
    let answer = answer.unwrap_or_else(|e| {
        panic!(
            "the sandbox never answered a snippet that outlives WORKER_TIMEOUT ({timeout:?}): {e}; the snippet's \
             processes still running: {left:?}. Root in the sandbox may signal the snippet's uid only with CAP_KILL \
             (sandbox.containerSecurityContext.capabilities.add)"
        )
    });
    let error = answer["data"]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("timeout") && left.is_empty(),
        "the sandbox should end a snippet past its WORKER_TIMEOUT ({timeout:?}): it answered {answer} after \
         {answered_after:?}, and the snippet's processes {left:?} are still running"
    );
    Ended { error: error.trim().to_string(), answered_after }
}

/// `POST path` of `body` to `ip:port` with the sandbox's key, over HTTP/1.0; the JSON answer, or why there is none
/// within `timeout`.
fn post_json(ip: Ipv4Addr, port: u16, path: &str, key: &str, body: &Value, timeout: Duration) -> Result<Value, String> {
    let mut stream = std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(5))
        .map_err(|e| format!("connecting to {ip}:{port}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nX-Api-Key: {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("no answer within {timeout:?} ({e})"))?;
    let (head, json) = answer.split_once("\r\n\r\n").ok_or_else(|| format!("not HTTP: {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or_default()));
    }
    serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {json:?}"))
}
