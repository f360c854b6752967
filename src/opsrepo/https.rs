//! git's smart HTTP protocol for `https://` remotes, over rustls (through ureq), registered with libgit2 as the
//! transport of the `https` scheme. libgit2's own HTTPS stream needs OpenSSL, whose start-up (loading the system CA
//! bundle in every run, whatever the remote) cost more than the rest of a no-op sync; rustls is also the TLS stack
//! that talks to the API server and that `verify` uses, so one set of trust rules covers all three.
//!
//! Trust: the certificates in `GIT_SSL_CAINFO` when set (git's rule: they replace the defaults), else the system's
//! (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured). Proxies: `HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY`. Redirects are not
//! followed: the token must never be sent to a host the operator did not name.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use zeroize::Zeroizing;

/// The variable holding the HTTPS token (a GitHub or GitLab personal access token, a GitHub App token, ...).
pub const TOKEN_ENV: &str = "DIFY_GITOPS_GIT_TOKEN";

const CA_FILE_ENV: &str = "GIT_SSL_CAINFO";

/// The user name sent with the token when neither `--git-username` nor the URL names one. GitHub wants any
/// non-empty name with a token (`x-access-token` for App tokens); GitLab and Gitea accept it too.
const DEFAULT_USER: &str = "x-access-token";

/// How requests to the remote are authenticated: HTTP Basic with the token, when there is one.
#[derive(Clone)]
pub struct Credentials {
    /// `--git-username`; else the URL's user, else [`DEFAULT_USER`].
    pub username: Option<String>,
    pub token: Option<Zeroizing<String>>,
}

impl Credentials {
    /// The token from `DIFY_GITOPS_GIT_TOKEN` (never a flag or a URL, so it stays out of process lists, shell
    /// history and logs) and the user name from the flags.
    pub fn from_env(username: Option<String>) -> Self {
        let token =
            std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()).map(|t| Zeroizing::new(t.trim().into()));
        Self { username, token }
    }
}

/// The agent and credentials every `https://` transport of this process uses (libgit2's registry is global).
static CLIENT: OnceLock<Arc<Client>> = OnceLock::new();

struct Client {
    /// Made at the first https:// request: loading the CA roots is wasted on every other remote.
    agent: OnceLock<Result<ureq::Agent, String>>,
    credentials: Credentials,
}

impl Client {
    fn agent(&self) -> Result<ureq::Agent, git2::Error> {
        let agent = self.agent.get_or_init(|| agent().map_err(|e| format!("{e:#}")));
        agent.clone().map_err(|e| git2::Error::from_str(&e))
    }
}

/// Makes libgit2 use this transport for `https://`; the first call of a process decides the credentials.
/// Called when an ops repo is opened, before any remote is used.
pub fn register(credentials: &Credentials) -> Result<()> {
    if CLIENT.get().is_some() {
        return Ok(());
    }
    let credentials = credentials.clone();
    let client = CLIENT.get_or_init(|| Arc::new(Client { agent: OnceLock::new(), credentials })).clone();
    // SAFETY: registered once (CLIENT is set only here), before any https:// remote is used.
    unsafe {
        git2::transport::register("https", move |remote| {
            Transport::smart(remote, true, SmartHttps { client: client.clone() })
        })
    }
    .context("registering the https:// transport")
}

fn agent() -> Result<ureq::Agent> {
    let tls = TlsConfig::builder()
        .root_certs(root_certs()?)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        // Some git servers only speak the smart protocol to clients that present themselves as git.
        .user_agent(concat!("git/2.0 (dify-gitops/", env!("CARGO_PKG_VERSION"), ")"))
        .build();
    Ok(config.into())
}

fn root_certs() -> Result<RootCerts> {
    if let Some(file) = std::env::var_os(CA_FILE_ENV).filter(|f| !f.is_empty()) {
        let shown = std::path::Path::new(&file).display().to_string();
        let pem = std::fs::read(&file).with_context(|| format!("the CA bundle {shown} ({CA_FILE_ENV})"))?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading the CA bundle {shown} ({CA_FILE_ENV})"))?;
        if certs.is_empty() {
            bail!("the CA bundle {shown} ({CA_FILE_ENV}) holds no certificate");
        }
        return Ok(RootCerts::from(certs));
    }
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!("loading the system's CA certificates: {error}");
    }
    Ok(RootCerts::from(found.certs.into_iter().map(|der| Certificate::from_der(der.as_ref()).to_owned())))
}

struct SmartHttps {
    client: Arc<Client>,
}

impl SmartSubtransport for SmartHttps {
    fn action(&self, url: &str, action: Service) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let (suffix, service, post) = match action {
            Service::UploadPackLs => ("/info/refs?service=git-upload-pack", "git-upload-pack", false),
            Service::ReceivePackLs => ("/info/refs?service=git-receive-pack", "git-receive-pack", false),
            Service::UploadPack => ("/git-upload-pack", "git-upload-pack", true),
            Service::ReceivePack => ("/git-receive-pack", "git-receive-pack", true),
        };
        let (url, url_user) = split_user(url);
        let request = Request { url: format!("{}{suffix}", url.trim_end_matches('/')), service, post, url_user };
        let agent = self.client.agent()?;
        Ok(Box::new(Exchange { agent, client: self.client.clone(), request, body: Vec::new(), response: None }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

struct Request {
    /// The URL without user info.
    url: String,
    service: &'static str,
    post: bool,
    /// The user name in the remote's URL (`https://bot@host/...`), if any.
    url_user: Option<String>,
}

/// `https://user@host/path` → (`https://host/path`, Some(user)); a password never gets here (refused earlier).
fn split_user(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) => (format!("{scheme}://{host}{}", &rest[authority_end..]), Some(user.to_string())),
        None => (url.to_string(), None),
    }
}

/// One request and its response: libgit2 writes the request body, then reads; the first read sends it.
struct Exchange {
    agent: ureq::Agent,
    client: Arc<Client>,
    request: Request,
    body: Vec<u8>,
    response: Option<Box<dyn Read + Send>>,
}

impl Exchange {
    fn send(&self) -> Result<Box<dyn Read + Send>, String> {
        let Request { url, service, post, .. } = &self.request;
        let shown = url.split('?').next().unwrap_or(url);
        let response = if *post {
            let request = self.agent.post(url.as_str());
            let request = self.authorize(request.header("Content-Type", format!("application/x-{service}-request")));
            request.header("Accept", format!("application/x-{service}-result")).send(&self.body[..])
        } else {
            self.authorize(self.agent.get(url.as_str())).call()
        }
        .map_err(|e| describe(&e, shown, self.agent.config().proxy()))?;
        let status = response.status().as_u16();
        let has_token = self.client.credentials.token.is_some();
        match status {
            200 => {}
            401 if !has_token => {
                return Err(format!("{shown} asks for credentials: set {TOKEN_ENV} to a token that may push to it"));
            }
            401 | 403 => {
                return Err(format!(
                    "{shown} refused the token in {TOKEN_ENV} (HTTP {status}): check that it is valid and may push to the repo"
                ));
            }
            404 => {
                return Err(format!(
                    "{shown}: no such repository (HTTP 404): check --repo, and that the token may read it"
                ));
            }
            300..=399 => {
                let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("?");
                return Err(format!("{shown} redirects to {location}: put the URL it names in --repo"));
            }
            _ => return Err(format!("{shown} answered HTTP {status}")),
        }
        let expected = if *post {
            format!("application/x-{service}-result")
        } else {
            format!("application/x-{service}-advertisement")
        };
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type != expected {
            return Err(format!(
                "{shown} is not a git smart-HTTP server (content type '{content_type}', not {expected})"
            ));
        }
        Ok(Box::new(response.into_body().into_reader()))
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        use base64::Engine;
        match &self.client.credentials.token {
            Some(token) => {
                let credentials = &self.client.credentials;
                let user = credentials.username.as_deref().or(self.request.url_user.as_deref()).unwrap_or(DEFAULT_USER);
                let pair = Zeroizing::new(format!("{user}:{}", token.as_str()));
                let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
                request.header("Authorization", format!("Basic {}", encoded.as_str()))
            }
            None => request,
        }
    }
}

/// A transport error in words, with the fix when the server's certificate was refused.
fn describe(error: &ureq::Error, url: &str, proxy: Option<&ureq::Proxy>) -> String {
    let host = url.split("://").nth(1).and_then(|rest| rest.split(['/', ':']).next()).unwrap_or(url);
    // rustls reports a refused certificate as itself, or wrapped in the I/O error of the handshake.
    let tls = match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the HTTPS certificate of {host} is not trusted ({why:?}): point {CA_FILE_ENV} (or SSL_CERT_FILE) at \
             its CA bundle"
        ),
        // A proxy from the environment is easy to forget: say when the request went through one.
        _ => match proxy.filter(|p| url.parse().is_ok_and(|uri| !p.is_no_proxy(&uri))) {
            Some(p) => format!("{url}: {error} (through the proxy {}:{} from the environment)", p.host(), p.port()),
            None => format!("{url}: {error}"),
        },
    }
}

impl Read for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.response = Some(self.send().map_err(io::Error::other)?);
        }
        self.response.as_mut().expect("set above").read(buf)
    }
}

impl Write for Exchange {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_split_from_the_url() {
        assert_eq!(
            split_user("https://bot@git.example.com/ops.git"),
            ("https://git.example.com/ops.git".into(), Some("bot".into()))
        );
        assert_eq!(split_user("https://git.example.com/a@b"), ("https://git.example.com/a@b".into(), None));
    }
}
