//! `dify-gitops verify`: probes a live install through its front door (NKP's Traefik) as a browser, an API client
//! and a plugin webhook would, and says for each route whether the right component answered and, when not, how to
//! fix it. Each probe fetches, then a pure function judges the answer, so the judgement is testable without a server.
//!
//! Who answered is told by the shape of the answer, as Dify's own components give it:
//! - web (Next.js): HTML referencing its assets under `<base path>/_next/`;
//! - api (Flask): JSON objects, errors as `{"code": "unauthorized", "message": …, "status": 401}`;
//! - plugin daemon (Gin): JSON `{"code": <negative number>, "message": …, "data": …}`;
//! - Traefik itself: `404 page not found` (no route) or a bare 502/503/504 (a route without a ready backend).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

/// A made-up hook id: the plugin daemon answers "not found" for it, which proves the route reaches the daemon.
const PROBE_HOOK: &str = "dify-gitops-verify";
const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// How to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's trusted roots.
    System,
    /// Only the CA certificates in this PEM file (NKP: the `kommander-ca` certificate).
    CaFile(PathBuf),
    /// No certificate check at all.
    Insecure,
}

pub use crate::report::Status;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// The URL probed (after redirects, for the web page).
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub base_path: String,
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// Where Dify is served: scheme + authority, and the base path without a trailing slash (`""` at the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub origin: String,
    pub base: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri =
            url.trim().parse().with_context(|| format!("'{url}' is not a URL: use e.g. https://192.0.2.10/dify"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "https" && scheme != "http" {
            bail!("'{url}' must start with https:// or http:// (e.g. https://192.0.2.10/dify)");
        }
        let authority =
            uri.authority().with_context(|| format!("'{url}' has no host: use e.g. https://192.0.2.10/dify"))?;
        if uri.query().is_some() {
            bail!("'{url}' has a query string: give only the address Dify is served at, e.g. https://192.0.2.10/dify");
        }
        let base = uri.path().trim_end_matches('/').to_string();
        Ok(Self { origin: format!("{scheme}://{authority}"), base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.base)
    }

    fn shown_base(&self) -> &str {
        if self.base.is_empty() { "/" } else { &self.base }
    }
}

/// What a server answered, or why there was no answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Response { url: String, status: u16, content_type: String, location: Option<String>, body: String },
    Unreachable { url: String, error: String },
}

impl Answer {
    fn url(&self) -> &str {
        match self {
            Answer::Response { url, .. } | Answer::Unreachable { url, .. } => url,
        }
    }
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            Answer::Unreachable { .. } => None,
        }
    }
}

/// Which component an answer came from, told by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Web,
    Api,
    PluginDaemon,
    /// An Engine.IO (Socket.IO) handshake: Dify's api-websocket (collaboration, Dify 1.15+).
    EngineIo,
    OtherJson,
    /// Traefik's own `404 page not found`: no router matched.
    NoRoute,
    /// Traefik's bare 502/503/504: a router matched but no backend answered.
    NoBackend,
    Other,
    Unreachable,
}

pub fn origin(answer: &Answer) -> Origin {
    let Answer::Response { status, content_type, body, .. } = answer else {
        return Origin::Unreachable;
    };
    if let Ok(serde_json::Value::Object(json)) = serde_json::from_str::<serde_json::Value>(body) {
        return match json.get("code") {
            Some(serde_json::Value::Number(_)) if json.contains_key("message") => Origin::PluginDaemon,
            Some(serde_json::Value::String(_)) => Origin::Api,
            _ if json.contains_key("step") || json.get("status").is_some_and(|s| s.is_number()) => Origin::Api,
            _ => Origin::OtherJson,
        };
    }
    if body.starts_with("0{") && body.contains("\"sid\"") {
        return Origin::EngineIo;
    }
    let start = body.trim_start().get(..15).unwrap_or_default().to_ascii_lowercase();
    if content_type.starts_with("text/html") || start.starts_with("<!doctype html") || start.starts_with("<html") {
        return Origin::Web;
    }
    match status {
        404 if body.trim() == "404 page not found" => Origin::NoRoute,
        502..=504 => Origin::NoBackend,
        _ => Origin::Other,
    }
}

fn describe(origin: &Origin) -> &'static str {
    match origin {
        Origin::Web => "web (HTML)",
        Origin::Api => "api (JSON)",
        Origin::PluginDaemon => "the plugin daemon",
        Origin::EngineIo => "a Socket.IO server",
        Origin::OtherJson => "something answering JSON that is neither Dify's api nor its plugin daemon",
        Origin::NoRoute => "Traefik, with no route for it (404 page not found)",
        Origin::NoBackend => "Traefik, with no ready backend behind the route",
        Origin::Other => "something that is not Dify",
        Origin::Unreachable => "nobody",
    }
}

/// The `/_next/` asset references of an HTML page, as paths (scheme and host dropped), in order of appearance.
pub fn next_assets(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"["'(]((?:https?://[^"'()\s/]+)?[^"'()\s<>]*?/_next/[^"'()\s<>\\]+)"#)
        .expect("valid asset regex");
    re.captures_iter(html)
        .map(|c| c[1].to_string())
        .map(|r| match r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")) {
            Some(rest) => rest.find('/').map_or_else(String::new, |i| rest[i..].to_string()),
            None => r,
        })
        .filter(|r| r.starts_with('/'))
        .collect()
}

fn fail(name: &'static str, answer: &Answer, reason: String, fix: String) -> Check {
    Check {
        name,
        status: Status::Fail,
        url: answer.url().to_string(),
        http_status: answer.status(),
        reason,
        fix: Some(fix),
    }
}

fn pass(name: &'static str, answer: &Answer, reason: String) -> Check {
    Check { name, status: Status::Pass, url: answer.url().to_string(), http_status: answer.status(), reason, fix: None }
}

/// The failure for an answer from the wrong place; `expected` names the component and `route` the Ingress.
fn misrouted(
    name: &'static str,
    answer: &Answer,
    origin: &Origin,
    expected: &str,
    route: &str,
    trust_fix: bool,
) -> Check {
    if let Answer::Response { url, status: status @ 300..=399, location: Some(location), .. } = answer {
        let fix = if url.starts_with("http://") && location.starts_with("https://") {
            "Traefik redirects HTTP to HTTPS (NKP's does): verify the https:// URL".to_string()
        } else {
            format!("{route} must be answered by {expected}, not redirected: check the Ingresses and middlewares")
        };
        return fail(name, answer, format!("redirected to {location} (HTTP {status}), expected {expected}"), fix);
    }
    let fix = match origin {
        Origin::Unreachable if trust_fix => "the server's certificate is not trusted: pass --ca-file with the CA that \
             signed it (on NKP the kommander-ca certificate: kubectl get secret -n cert-manager kommander-ca -o \
             jsonpath='{.data.tls\\.crt}' | base64 -d > ca.crt), or --insecure"
            .to_string(),
        Origin::Unreachable => "check the address (dify-gitops discover prints Traefik's load-balancer address) and \
             that this machine can reach it"
            .to_string(),
        Origin::NoRoute => format!(
            "no Ingress claims {route}: check `kubectl get ingress -n <namespace>` for the {expected} Ingress, its \
             ingressClassName (NKP's Traefik ignores every other class) and, over https, its router.entrypoints \
             (websecure) and router.tls annotations"
        ),
        Origin::NoBackend => format!(
            "the route exists but {expected} has no ready pod: kubectl get pods -n <namespace> -l \
             app.kubernetes.io/component={expected}"
        ),
        _ => format!(
            "{route} must go to {expected}: check that the {expected} Ingress exists with the same ingressClassName \
             and entrypoints as the others (a missing one lets the web catch-all take its paths)"
        ),
    };
    let answered = match (origin, answer) {
        (Origin::Unreachable, Answer::Unreachable { error, .. }) => format!("no answer: {error}"),
        _ => format!("answered by {} with HTTP {}", describe(origin), answer.status().unwrap_or_default()),
    };
    fail(name, answer, format!("{answered}, expected {expected}"), fix)
}

fn is_tls_error(answer: &Answer) -> bool {
    matches!(answer, Answer::Unreachable { error, .. } if error.contains("certificate") || error.contains("Certificate"))
}

/// The web page at the base path: served by web, and built for this base path.
pub fn judge_web(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "web";
    let origin = origin(answer);
    let Answer::Response { body, status, .. } = answer else {
        return misrouted(NAME, answer, &origin, "web", target.shown_base(), is_tls_error(answer));
    };
    if origin != Origin::Web {
        return misrouted(NAME, answer, &origin, "web", &format!("{}/", target.base), false);
    }
    let assets = next_assets(body);
    let prefix = |asset: &str| asset[..asset.find("/_next/").unwrap_or(0)].to_string();
    let mut prefixes: Vec<String> = assets.iter().map(|a| prefix(a)).collect();
    prefixes.dedup();
    let build_fix = |what: &str| {
        format!(
            "{what}: build the web image with NEXT_PUBLIC_BASE_PATH={base} (docker build --build-arg \
             NEXT_PUBLIC_BASE_PATH={base} -t <registry>/dify-web:<tag> web/ in a checkout of Dify at the same tag) and \
             set images.web.repository and images.web.tag to it",
            base = target.base
        )
    };
    if assets.is_empty() {
        return fail(
            NAME,
            answer,
            format!("HTML with HTTP {status} but no /_next/ assets: not Dify's web page"),
            "check what serves this path: the web Ingress should send it to the web Service".to_string(),
        );
    }
    if prefixes.iter().all(|p| *p == target.base) {
        return pass(NAME, answer, format!("HTTP {status}, {} assets under {}/_next/", assets.len(), target.base));
    }
    let other = prefixes.iter().find(|p| **p != target.base).cloned().unwrap_or_default();
    if other.is_empty() {
        fail(
            NAME,
            answer,
            format!(
                "the page asks for its assets at /_next/ (outside {}): a web image built without a base path, \
                 so the browser's requests for them reach no Dify route",
                target.base
            ),
            build_fix("the stock web image only works at the root path"),
        )
    } else {
        fail(
            NAME,
            answer,
            format!(
                "the page asks for its assets at {other}/_next/: a web image built for {other}, served at {}",
                target.shown_base()
            ),
            build_fix("the web image's base path must be the path it is served at"),
        )
    }
}

/// One asset the page references: web serves it under the base path too.
pub fn judge_asset(answer: &Answer) -> Check {
    const NAME: &str = "web-assets";
    let origin = origin(answer);
    match answer {
        Answer::Response { status, .. } if (200..300).contains(status) => {
            pass(NAME, answer, format!("HTTP {status}: the page's scripts and styles load"))
        }
        _ if matches!(origin, Origin::NoRoute | Origin::NoBackend | Origin::Unreachable) => {
            misrouted(NAME, answer, &origin, "web", "the asset path", false)
        }
        _ => fail(
            NAME,
            answer,
            format!("HTTP {}: the page's own asset does not load", answer.status().unwrap_or_default()),
            "check the web pods' logs; the asset path must reach web unstripped".to_string(),
        ),
    }
}

/// `<base>/console/api/setup` answers JSON from api (the console's first call).
pub fn judge_console_api(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "console-api";
    let origin = origin(answer);
    if origin != Origin::Api {
        let route = format!("{}/console/api", target.base);
        return misrouted(NAME, answer, &origin, "api", &route, is_tls_error(answer));
    }
    let Answer::Response { status, body, .. } = answer else { unreachable!("an api origin has a response") };
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match json.get("step").and_then(|s| s.as_str()) {
        Some(step) => pass(NAME, answer, format!("HTTP {status}, setup step '{step}'")),
        None => Check {
            status: Status::Warn,
            fix: Some("api answers but not as Dify's setup endpoint does: check the api pods' logs".to_string()),
            ..pass(NAME, answer, format!("HTTP {status}: JSON from api without a setup step"))
        },
    }
}

/// `<base>/v1/...` (the service API) answers from api; 401 without an app key is the expected answer.
pub fn judge_service_api(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "service-api";
    let origin = origin(answer);
    if origin != Origin::Api {
        return misrouted(NAME, answer, &origin, "api", &format!("{}/v1", target.base), is_tls_error(answer));
    }
    let status = answer.status().unwrap_or_default();
    if status >= 500 {
        return fail(
            NAME,
            answer,
            format!("api answered HTTP {status}"),
            "api is reachable but failing: check the api pods' logs".to_string(),
        );
    }
    pass(NAME, answer, format!("HTTP {status} from api"))
}

/// `<base>/e/<hook>/...` reaches the plugin daemon (plugin endpoints, webhooks).
pub fn judge_plugin_hook(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "plugin-hook";
    let origin = origin(answer);
    if origin == Origin::PluginDaemon {
        let status = answer.status().unwrap_or_default();
        return pass(NAME, answer, format!("HTTP {status} from the plugin daemon"));
    }
    let mut check =
        misrouted(NAME, answer, &origin, "plugin-daemon", &format!("{}/e/", target.base), is_tls_error(answer));
    if origin == Origin::Web {
        check.fix = Some(format!(
            "{}/e/ must go to the plugin daemon with the base path stripped: Dify 1.x needs the plugin-daemon \
             Ingress (Dify before 1.0 has no plugin daemon, and no plugin endpoints)",
            target.base
        ));
    }
    check
}

/// `<base>/socket.io/` reaches api-websocket (collaboration): an Engine.IO handshake. Skipped when web answers,
/// as it does when collaboration is off (the path then falls to the web catch-all).
pub fn judge_websocket(target: &Target, answer: &Answer) -> Check {
    const NAME: &str = "websocket";
    let origin = origin(answer);
    match origin {
        Origin::EngineIo => pass(NAME, answer, "Socket.IO handshake from api-websocket".to_string()),
        Origin::Web | Origin::NoRoute => Check {
            status: Status::Skip,
            ..pass(
                NAME,
                answer,
                format!(
                    "no Socket.IO server behind {}/socket.io/ ({} answered): collaboration is off, or its Ingress is \
                     missing",
                    target.base,
                    describe(&origin)
                ),
            )
        },
        _ => misrouted(NAME, answer, &origin, "api-websocket", &format!("{}/socket.io/", target.base), false),
    }
}

/// An HTTP(S) client with the given trust, HTTP/1.1 only.
pub struct Prober {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Prober {
    pub fn new(trust: &Trust, timeout: Duration) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let config = match trust {
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Trust::CaFile(path) => builder.with_root_certificates(roots_from_file(path)?).with_no_client_auth(),
            Trust::System => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector), timeout })
    }

    /// GET `url`, following up to five redirects when `follow` is set.
    pub async fn get(&self, url: &str, follow: bool) -> Answer {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let answer = self.get_once(&url).await;
            match &answer {
                Answer::Response { status, location: Some(location), .. } if follow && (300..400).contains(status) => {
                    url = resolve(&url, location);
                }
                _ => return answer,
            }
        }
        Answer::Unreachable { url, error: format!("more than {MAX_REDIRECTS} redirects") }
    }

    async fn get_once(&self, url: &str) -> Answer {
        let unreachable = |error: String| Answer::Unreachable { url: url.to_string(), error };
        let request = match Request::get(url)
            .header(header::USER_AGENT, concat!("dify-gitops/", env!("CARGO_PKG_VERSION"), " verify"))
            .header(header::ACCEPT, "text/html,application/json;q=0.9,*/*;q=0.8")
            .body(Empty::new())
        {
            Ok(request) => request,
            Err(error) => return unreachable(format!("bad URL: {error}")),
        };
        let started = Instant::now();
        let fetch = async {
            let response = self.client.request(request).await.map_err(|e| chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| format!("reading the body: {e}"))?;
            Ok::<_, String>((parts, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Err(_) => unreachable(format!("no answer within {:?}", started.elapsed())),
            Ok(Err(error)) => unreachable(error),
            Ok(Ok((parts, body))) => {
                let text = |name| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                Answer::Response {
                    url: url.to_string(),
                    status: parts.status.as_u16(),
                    content_type: text(header::CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase(),
                    location: text(header::LOCATION),
                    body: String::from_utf8_lossy(&body).into_owned(),
                }
            }
        }
    }
}

/// The probes, in order; the report passes when none fails.
pub async fn run(target: &Target, prober: &Prober) -> Report {
    let mut checks = Vec::new();
    let page = prober.get(&target.url("/"), true).await;
    let web = judge_web(target, &page);
    let asset = match &page {
        Answer::Response { body, .. } if web.status == Status::Pass => next_assets(body).into_iter().next(),
        _ => None,
    };
    checks.push(web);
    checks.push(match asset {
        Some(path) => judge_asset(&prober.get(&format!("{}{path}", target.origin), false).await),
        None => Check {
            name: "web-assets",
            status: Status::Skip,
            url: target.url("/_next/"),
            http_status: None,
            reason: "skipped: the web page did not pass".to_string(),
            fix: None,
        },
    });
    checks.push(judge_console_api(target, &prober.get(&target.url("/console/api/setup"), false).await));
    checks.push(judge_service_api(target, &prober.get(&target.url("/v1/info"), false).await));
    let hook = target.url(&format!("/e/{PROBE_HOOK}/ping"));
    checks.push(judge_plugin_hook(target, &prober.get(&hook, false).await));
    let socket = target.url("/socket.io/?EIO=4&transport=polling");
    checks.push(judge_websocket(target, &prober.get(&socket, false).await));
    let passed = checks.iter().all(|c| c.status != Status::Fail);
    Report {
        url: format!("{}{}", target.origin, target.base),
        base_path: target.shown_base().to_string(),
        passed,
        checks,
    }
}

/// Resolves a `Location` header against the URL that sent it.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let Ok(uri) = base.parse::<Uri>() else { return location.to_string() };
    let origin = format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map_or("", |a| a.as_str()));
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = &uri.path()[..uri.path().rfind('/').map_or(0, |i| i + 1)];
        format!("{origin}{dir}{location}")
    }
}

/// An error and its causes on one line (hyper's own message is only "client error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn roots_from_file(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the CA file {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    for cert in certs {
        roots.add(cert).with_context(|| format!("{} holds a certificate that is not a valid CA", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate, still checking the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The text table: one line per check with the URL probed, the fix under a failing one.
pub fn table(report: &Report) -> String {
    let rows = report.checks.iter().map(|c| crate::report::Row {
        status: c.status,
        name: c.name,
        reason: format!("{}  ({})", c.reason, c.url),
        fix: c.fix.as_deref(),
    });
    format!("verify {}\n{}", report.url, crate::report::table(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: &str, body: &str) -> Answer {
        Answer::Response {
            url: "https://192.0.2.10/dify/x".into(),
            status,
            content_type: content_type.into(),
            location: None,
            body: body.into(),
        }
    }

    fn target() -> Target {
        Target::parse("https://192.0.2.10/dify/").unwrap()
    }

    #[test]
    fn targets_keep_the_origin_and_the_base_path_without_its_trailing_slash() {
        assert_eq!(target(), Target { origin: "https://192.0.2.10".into(), base: "/dify".into() });
        assert_eq!(Target::parse("http://10.0.0.5:8080").unwrap().base, "");
        assert!(Target::parse("ftp://x/dify").unwrap_err().to_string().contains("https://"));
        assert!(Target::parse("/dify").unwrap_err().to_string().contains("e.g. https://192.0.2.10/dify"));
    }

    #[test]
    fn origins_are_told_by_the_shape_of_the_answer() {
        let api_error =
            r#"{"code": "unauthorized", "message": "Authorization header must be provided", "status": 401}"#;
        assert_eq!(origin(&response(401, "application/json", api_error)), Origin::Api);
        assert_eq!(origin(&response(200, "application/json", r#"{"step": "finished"}"#)), Origin::Api);
        let daemon = r#"{"code": -404, "message": "{\"message\":\"endpoint not found\"}", "data": null}"#;
        assert_eq!(origin(&response(404, "application/json; charset=utf-8", daemon)), Origin::PluginDaemon);
        assert_eq!(origin(&response(200, "text/html; charset=utf-8", "<!DOCTYPE html><html>")), Origin::Web);
        assert_eq!(origin(&response(404, "text/plain; charset=utf-8", "404 page not found\n")), Origin::NoRoute);
        assert_eq!(origin(&response(503, "text/plain", "Service Unavailable")), Origin::NoBackend);
        assert_eq!(origin(&response(200, "application/json", r#"{"ok": true}"#)), Origin::OtherJson);
        let handshake = r#"0{"sid":"x","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}"#;
        assert_eq!(origin(&response(200, "text/plain; charset=UTF-8", handshake)), Origin::EngineIo);
    }

    #[test]
    fn next_assets_are_found_in_attributes_and_inline_flight_data() {
        let html = r#"<link rel="stylesheet" href="/dify/_next/static/css/app.css"/><script src="https://192.0.2.10/dify/_next/static/chunks/main.js" async></script><script>self.__next_f.push([1,"HL[\"/dify/_next/static/media/font.woff2\",\"font\"]"])</script>"#;
        assert_eq!(
            next_assets(html),
            [
                "/dify/_next/static/css/app.css",
                "/dify/_next/static/chunks/main.js",
                "/dify/_next/static/media/font.woff2"
            ]
        );
    }

    #[test]
    fn a_base_path_build_passes_and_a_stock_build_fails_naming_the_build_argument() {
        let built = r#"<!DOCTYPE html><html><script src="/dify/_next/static/chunks/main.js"></script></html>"#;
        assert_eq!(judge_web(&target(), &response(200, "text/html", built)).status, Status::Pass);

        let stock = r#"<!DOCTYPE html><html><script src="/_next/static/chunks/main.js"></script></html>"#;
        let check = judge_web(&target(), &response(404, "text/html", stock));
        assert_eq!(check.status, Status::Fail);
        assert!(check.reason.contains("/_next/ (outside /dify)"), "{}", check.reason);
        assert!(check.fix.unwrap().contains("NEXT_PUBLIC_BASE_PATH=/dify"));

        let other = r#"<!DOCTYPE html><script src="/ai/_next/static/chunks/main.js"></script>"#;
        let check = judge_web(&target(), &response(404, "text/html", other));
        assert!(check.reason.contains("built for /ai, served at /dify"), "{}", check.reason);

        let root = Target::parse("https://192.0.2.10").unwrap();
        assert_eq!(judge_web(&root, &response(200, "text/html", stock)).status, Status::Pass);
    }

    #[test]
    fn misrouted_answers_name_the_component_that_answered_and_the_route_to_fix() {
        let html = response(200, "text/html", "<!DOCTYPE html><html></html>");
        let check = judge_console_api(&target(), &html);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.reason, "answered by web (HTML) with HTTP 200, expected api");
        assert!(check.fix.unwrap().contains("/dify/console/api must go to api"));

        let check = judge_plugin_hook(&target(), &html);
        assert!(check.fix.unwrap().contains("plugin-daemon Ingress"));

        let api = response(404, "application/json", r#"{"code": "not_found", "message": "x", "status": 404}"#);
        assert_eq!(
            judge_plugin_hook(&target(), &api).reason,
            "answered by api (JSON) with HTTP 404, expected plugin-daemon"
        );

        let redirect = Answer::Response {
            url: "http://192.0.2.10/dify/v1/info".into(),
            status: 308,
            content_type: "text/plain".into(),
            location: Some("https://192.0.2.10/dify/v1/info".into()),
            body: "Permanent Redirect".into(),
        };
        let check = judge_service_api(&target(), &redirect);
        assert_eq!(check.reason, "redirected to https://192.0.2.10/dify/v1/info (HTTP 308), expected api");
        assert!(check.fix.unwrap().contains("verify the https:// URL"));

        let none = response(404, "text/plain", "404 page not found");
        assert!(judge_service_api(&target(), &none).fix.unwrap().contains("ingressClassName"));

        let tls = Answer::Unreachable {
            url: "https://x/dify/v1/info".into(),
            error: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(judge_service_api(&target(), &tls).fix.unwrap().contains("--ca-file"));
    }

    #[test]
    fn the_websocket_check_passes_on_a_handshake_and_is_skipped_when_web_answers() {
        let handshake = response(200, "text/plain", r#"0{"sid":"x","upgrades":["websocket"]}"#);
        assert_eq!(judge_websocket(&target(), &handshake).status, Status::Pass);
        let web = response(404, "text/html", "<!DOCTYPE html><html></html>");
        let check = judge_websocket(&target(), &web);
        assert_eq!(check.status, Status::Skip);
        assert!(check.reason.contains("collaboration is off"), "{}", check.reason);
        let down = response(503, "text/plain", "Service Unavailable");
        let check = judge_websocket(&target(), &down);
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.unwrap().contains("app.kubernetes.io/component=api-websocket"));
    }

    #[test]
    fn redirects_resolve_against_the_url_that_sent_them() {
        assert_eq!(resolve("https://h:8443/dify/", "/dify/apps"), "https://h:8443/dify/apps");
        assert_eq!(resolve("https://h/dify/x/y", "z"), "https://h/dify/x/z");
        assert_eq!(resolve("http://h/dify/", "https://h/dify/"), "https://h/dify/");
    }
}
