//! The code sandbox's own API, asked as Dify's api asks it: `POST /v1/sandbox/run` on the sandbox pod's port, with
//! the release's key in `X-Api-Key` and the network on (as api always asks). For the checks that need the sandbox
//! without a workflow around it.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::install::Install;

pub struct SandboxApi {
    ip: Ipv4Addr,
    port: u16,
    key: String,
    /// The sandbox's `WORKER_TIMEOUT`: how long a snippet may run.
    pub worker_timeout: Duration,
}

impl SandboxApi {
    /// The release's sandbox, as its rendered container says: address, port, key and timeout.
    pub fn of(install: &Install) -> SandboxApi {
        let sandbox =
            install.release.containers("dify-sandbox", false).into_iter().next().expect("a sandbox container");
        let env = |name: &str| {
            sandbox
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the sandbox container has no {name}"))
        };
        let timeout = env("WORKER_TIMEOUT");
        SandboxApi {
            ip: install.addresses["dify-sandbox"],
            port: *sandbox.ports.values().next().expect("the sandbox's port"),
            key: env("API_KEY"),
            worker_timeout: Duration::from_secs(
                timeout.parse().unwrap_or_else(|_| panic!("WORKER_TIMEOUT {timeout:?}")),
            ),
        }
    }

    /// Runs Python `code`; the sandbox's JSON answer, or why there is none within `wait`.
    pub fn run_python(&self, code: &str, wait: Duration) -> Result<Value, String> {
        let body = json!({"language": "python3", "code": code, "preload": "", "enable_network": true}).to_string();
        let (ip, port) = (self.ip, self.port);
        let mut stream = std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(5))
            .map_err(|e| format!("connecting to {ip}:{port}: {e}"))?;
        stream.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
        let request = format!(
            "POST /v1/sandbox/run HTTP/1.0\r\nHost: {ip}:{port}\r\nX-Api-Key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.key,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| format!("no answer within {wait:?} ({e})"))?;
        let (head, json) = answer.split_once("\r\n\r\n").ok_or_else(|| format!("not HTTP: {answer:?}"))?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(format!("answered {}", head.lines().next().unwrap_or_default()));
        }
        serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {json:?}"))
    }
}
