//! An HTTP CONNECT proxy on loopback, in plain std Rust (threads, blocking I/O), so that `dify-gitops sync --repo
//! https://…` can be shown to find its proxy in the environment (`HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`), to
//! bypass it for `NO_PROXY` hosts, and to keep the token inside TLS: the proxy records the head of every request
//! and every byte a client sends into a tunnel, as a real proxy on the path could. `CONNECT host:port` is answered `200 Connection established` once the upstream connection is made (`502`
//! when it cannot be), then bytes are copied both ways until either side closes; any other method gets `405`.
//! [`ConnectProxy::start_requiring`] also wants `Proxy-Authorization: Basic …` (`407` otherwise), which ureq sends
//! for a proxy URL of the form `http://user:password@host:port`. Threads end with the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// A running CONNECT proxy: `url` is `http://127.0.0.1:<port>`.
pub struct ConnectProxy {
    pub url: String,
    seen: Arc<Mutex<Vec<SeenConnect>>>,
}

/// One request as the proxy answered it, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenConnect {
    /// The request head as received, request line and headers, up to the blank line.
    pub head: String,
    /// `host:port` of a `CONNECT`; empty for another method.
    pub target: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Every byte the client sent into the tunnel (empty when none was opened): what the proxy could read of the
    /// exchange, which for `https://` must be TLS records only.
    pub client_bytes: Vec<u8>,
}

/// What every connection thread needs.
struct Setup {
    /// The `Proxy-Authorization` value required, when any.
    required: Option<String>,
    seen: Arc<Mutex<Vec<SeenConnect>>>,
}

impl ConnectProxy {
    /// A proxy that tunnels for anyone.
    pub fn start() -> ConnectProxy {
        ConnectProxy::start_with(None)
    }

    /// A proxy that only tunnels for `Proxy-Authorization: Basic base64(user:password)`, `407` otherwise.
    pub fn start_requiring(user: &str, password: &str) -> ConnectProxy {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        ConnectProxy::start_with(Some(format!("Basic {encoded}")))
    }

    fn start_with(required: Option<String>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let setup = Setup { required, seen: seen.clone() };
        super::net::serve_each(listener, "connect proxy", move |stream| serve(stream, &setup));
        ConnectProxy { url, seen }
    }

    /// `http://127.0.0.1:<port>` of a port nothing listens on: a proxy that refuses every connection.
    pub fn refusing_url() -> String {
        format!("http://127.0.0.1:{}", super::net::free_port())
    }

    /// The `host:port` of each `CONNECT` that was answered `200`, in order.
    pub fn tunnels(&self) -> Vec<String> {
        self.requests().into_iter().filter(|r| r.status == 200).map(|r| r.target).collect()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<SeenConnect> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests as text, one a line, for failure messages.
    pub fn log(&self) -> String {
        self.requests().iter().map(|r| format!("{} -> {}\n", r.head.lines().next().unwrap_or(""), r.status)).collect()
    }
}

fn serve(mut client: TcpStream, setup: &Setup) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let Some(head) = read_head(&mut client)? else { return Ok(()) };
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (request_line.next().unwrap_or(""), request_line.next().unwrap_or(""));
    let authorization = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("proxy-authorization").then(|| value.trim().to_string())
    });
    // Recorded when answered, before any tunnel closes: a client that is done has been seen in full.
    let record = |status: u16| {
        let target = if method == "CONNECT" { target.to_string() } else { String::new() };
        let mut seen = setup.seen.lock().unwrap();
        seen.push(SeenConnect { head: head.clone(), target, status, client_bytes: Vec::new() });
        seen.len() - 1
    };
    if method != "CONNECT" {
        record(405);
        return answer(&mut client, "405 Method Not Allowed", "Allow: CONNECT\r\n");
    }
    if setup.required.is_some() && authorization != setup.required {
        record(407);
        return answer(
            &mut client,
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"proxy\"\r\n",
        );
    }
    let mut upstream = match TcpStream::connect(target) {
        Ok(upstream) => upstream,
        Err(e) => {
            record(502);
            eprintln!("connect proxy: connecting to {target}: {e}");
            return answer(&mut client, "502 Bad Gateway", "");
        }
    };
    let index = record(200);
    client.set_read_timeout(None)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    client.flush()?;

    // Upstream to client on a thread of its own; client to upstream here, keeping what it sends.
    let (mut from_upstream, mut to_client) = (upstream.try_clone()?, client.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Kept before it is passed on, so whatever the upstream answered to is already on record.
        setup.seen.lock().unwrap()[index].client_bytes.extend_from_slice(&buffer[..n]);
        if upstream.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}

/// The request head up to and without the blank line, read a byte at a time so nothing after it is consumed;
/// `None` when the client closed first.
fn read_head(client: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("request head over 64 KiB"));
        }
    }
    head.truncate(head.len() - 4);
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn answer(client: &mut TcpStream, status: &str, headers: &str) -> std::io::Result<()> {
    write!(client, "HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    client.flush()
}
