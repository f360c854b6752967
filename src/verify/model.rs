//! What verify is given and what each probe concludes: where Dify is served ([`Target`]), whom to trust
//! ([`Trust`]), and one probe's [`Check`].

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use http::Uri;
use serde::Serialize;

pub use crate::report::Status;

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

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.base)
    }

    pub(super) fn shown_base(&self) -> &str {
        if self.base.is_empty() { "/" } else { &self.base }
    }
}
