//! Git smart-HTTP servers for tests, backed by `git http-backend` run as a CGI program per request behind a tiny
//! in-process HTTP/1.1 server: a plain read-only one (what the Flux controllers clone from) and an HTTPS one with a
//! throw-away CA and token auth (what `dify-gitops sync --repo https://…` clones from and pushes to), so both the
//! TLS trust and the credentials path of a client meet a real server without leaving loopback. Every response says
//! `Connection: close` and the connection ends with it, which keeps the server to one request per connection and
//! lets clients (curl in git, libgit2) re-send with credentials on a fresh one. Threads end with the test process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::net::serve_each;
use super::tls::serving_certificate;

/// A git smart-HTTP server (read only) for the bare repositories under `root`: `http://127.0.0.1:<port>/<name>.git`.
/// Each request runs `git http-backend` as a CGI program. Its threads end with the test process.
pub struct GitHttpServer {
    pub url: String,
    pub root: PathBuf,
}

impl GitHttpServer {
    pub fn start(root: &Path) -> GitHttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let project_root = root.to_path_buf();
        serve_each(listener, "git http server", move |stream| serve_one(stream, &project_root));
        GitHttpServer { url, root: root.to_path_buf() }
    }

    /// An HTTPS server for the bare repositories under `root` (`https://127.0.0.1:<port>/<name>.git`, read and
    /// push) that only answers requests whose HTTP Basic password is `token`; see [`GitHttpsServer`].
    pub fn start_https(root: &Path, token: &str) -> GitHttpsServer {
        GitHttpsServer::start(root, token)
    }
}

/// A git smart-HTTPS server with token auth. Its certificate (for `127.0.0.1` and `localhost`) is signed by a CA of
/// its own, written to `ca_file` for clients to trust (`GIT_SSL_CAINFO`, `SSL_CERT_FILE`, `http.sslCAInfo`).
/// Requests without Basic credentials whose password is the token get `401` with `WWW-Authenticate: Basic`, so
/// clients ask for credentials; the others run `git http-backend` as `REMOTE_USER=<username>`, which allows pushes.
pub struct GitHttpsServer {
    /// `https://127.0.0.1:<port>`, without credentials.
    pub url: String,
    pub root: PathBuf,
    /// The CA's PEM certificate; removed when the server is dropped.
    pub ca_file: PathBuf,
    pub token: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    _dir: tempfile::TempDir,
}

/// One request as the HTTPS server answered it, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query, as sent: `/ops.git/info/refs?service=git-receive-pack`.
    pub target: String,
    /// The username of the request's Basic credentials, whether or not the password was right.
    pub user: Option<String>,
    /// True when the Basic password was the token.
    pub authorized: bool,
    /// The HTTP status answered.
    pub status: u16,
}

impl std::fmt::Display for SeenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match (&self.user, self.authorized) {
            (None, _) => "no credentials".to_string(),
            (Some(user), true) => format!("user {user:?} with the token"),
            (Some(user), false) => format!("user {user:?} with a wrong password"),
        };
        write!(f, "{} {} ({auth}) -> {}", self.method, self.target, self.status)
    }
}

/// What every HTTPS connection thread needs.
struct Site {
    root: PathBuf,
    token: String,
    tls: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl GitHttpsServer {
    fn start(root: &Path, token: &str) -> GitHttpsServer {
        let dir = tempfile::Builder::new().prefix("dify-gitops-git-https.").tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let serving = serving_certificate(
            &ca_file,
            "dify-gitops test git CA",
            "dify-gitops test git server",
            &["127.0.0.1", "localhost"],
        );
        let cert = CertificateDer::from(serving.cert_der);
        let key: PrivateKeyDer = PrivatePkcs8KeyDer::from(serving.key_der).into();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("rustls server certificate");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let site = Site { root: root.to_path_buf(), token: token.to_string(), tls: Arc::new(tls), seen: seen.clone() };
        // A failed handshake (a client that does not trust the CA) is reported too; the line helps when a test
        // did not expect it.
        serve_each(listener, "git https server", move |stream| serve_tls(stream, &site));
        GitHttpsServer { url, root: root.to_path_buf(), ca_file, token: token.to_string(), seen, _dir: dir }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// The usernames that came with the token, each once, in the order first seen.
    pub fn authorized_users(&self) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        for user in self.requests().into_iter().filter(|r| r.authorized).filter_map(|r| r.user) {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        users
    }

    /// The requests as text, one a line, for failure messages.
    pub fn log(&self) -> String {
        self.requests().iter().map(|r| format!("{r}\n")).collect()
    }
}

/// The answer without the token; `WWW-Authenticate` is what makes git and libgit2 ask for credentials.
const UNAUTHORIZED: &str = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ops\"\r\n\
    Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nauthentication required\n";

fn serve_tls(tcp: TcpStream, site: &Site) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let tls = rustls::ServerConnection::new(site.tls.clone()).map_err(std::io::Error::other)?;
    // The handshake happens on the first read, inside read_head.
    let mut reader = BufReader::new(rustls::StreamOwned::new(tls, tcp));
    let Some(head) = read_head(&mut reader)? else { return Ok(()) };
    let credentials = head.headers.get("authorization").and_then(|v| basic_credentials(v));
    let authorized = credentials.as_ref().is_some_and(|(_, password)| *password == site.token);
    let user = credentials.map(|(user, _)| user);
    let expects_continue = head.headers.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let response = if authorized {
        if expects_continue {
            reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            reader.get_mut().flush()?;
        }
        let body = read_body(&mut reader, &head.headers)?;
        // http-backend only allows receive-pack for a non-empty REMOTE_USER; an empty username is still a login.
        let remote_user = user.as_deref().filter(|u| !u.is_empty()).unwrap_or("token");
        run_backend(&site.root, &head, body, Some(remote_user))?
    } else {
        // Read what the client already sent, so closing does not reset the connection under the 401; a client
        // that waits for `100 Continue` has sent nothing yet.
        if !expects_continue {
            read_body(&mut reader, &head.headers)?;
        }
        UNAUTHORIZED.as_bytes().to_vec()
    };
    // "HTTP/1.1 200 OK": the code is bytes 9 to 12.
    let status = response.get(9..12).and_then(|code| std::str::from_utf8(code).ok()?.parse().ok()).unwrap_or(0);
    // Recorded before answering: once the client has its answer, a test may look.
    site.seen.lock().unwrap().push(SeenRequest {
        method: head.method.clone(),
        target: head.target.clone(),
        user,
        authorized,
        status,
    });
    let stream = reader.get_mut();
    stream.write_all(&response)?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// `(username, password)` of an `Authorization: Basic …` header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A request's first line and headers (names lower-cased).
struct Head {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
}

fn serve_one(stream: TcpStream, project_root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(head) = read_head(&mut reader)? else { return Ok(()) };
    let body = read_body(&mut reader, &head.headers)?;
    let response = run_backend(project_root, &head, body, None)?;
    let mut stream = stream;
    stream.write_all(&response)?;
    stream.flush()
}

/// None when the client closed the connection without sending a request.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("GET").to_string(), parts.next().unwrap_or("/").to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(Some(Head { method, target, headers }))
}

fn read_body(reader: &mut impl BufRead, headers: &BTreeMap<String, String>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(length) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(body)
}

/// Runs `git http-backend` for one request and returns the whole HTTP response. `remote_user` (an authenticated
/// client) is what lets http-backend accept pushes.
fn run_backend(project_root: &Path, head: &Head, body: Vec<u8>, remote_user: Option<&str>) -> std::io::Result<Vec<u8>> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(user) = remote_user {
        cgi.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = head.headers.get(header) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let raw = output.stdout;
    let split = find(&raw, b"\r\n\r\n").map(|i| (i, 4)).or_else(|| find(&raw, b"\n\n").map(|i| (i, 2)));
    let (cgi_head, content) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&raw[..i]).to_string(), &raw[i + n..]),
        None => (String::new(), &raw[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut extra = String::new();
    for line in cgi_head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => extra.push_str(&format!("{}\r\n", line.trim_end())),
            None => {}
        }
    }
    if !output.status.success() && cgi_head.is_empty() {
        status = "500 Internal Server Error".into();
    }
    response.extend_from_slice(
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", content.len())
            .as_bytes(),
    );
    response.extend_from_slice(content);
    Ok(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
