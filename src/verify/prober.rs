//! The HTTP(S) client of the probes: HTTP/1.1 over hyper and rustls, a body limit, a timeout per request, and
//! redirects followed (at most a few) only where a browser would follow them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::judge::Answer;
use super::model::Trust;
use super::tls::{AnyCertificate, roots_from_file};

/// An answer's body is read up to this size.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

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

/// Resolves a `Location` header against the URL that sent it.
pub(super) fn resolve(base: &str, location: &str) -> String {
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
