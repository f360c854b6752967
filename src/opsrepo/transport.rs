//! How the ops repo's remote is reached: credentials for HTTPS (a token from the environment, read and sent by
//! `https.rs`) and SSH (a key file, ssh-agent, or the usual keys in ~/.ssh), and URLs that are safe to print.
//!
//! Server identity: HTTPS certificates are checked by rustls (`https.rs`), SSH host keys by libgit2 against
//! `~/.ssh/known_hosts`. Neither check can be switched off.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use git2::{Cred, CredentialType, ProxyOptions, RemoteCallbacks};

use super::https::{self, TOKEN_ENV};

/// Credentials for the ops repo's remotes: the SSH key for SSH ones, the token for `https://` ones (handed to
/// the https transport when the repo is opened).
pub struct Access {
    ssh_key: Option<PathBuf>,
    pub(super) https: https::Credentials,
}

impl Access {
    /// The SSH key from the flags; for `https://`, the token from `DIFY_GITOPS_GIT_TOKEN` and the user name.
    /// Reads the environment and checks the key file; installs nothing.
    pub fn from_env(username: Option<String>, ssh_key: Option<PathBuf>) -> Result<Self> {
        if let Some(key) = &ssh_key {
            std::fs::metadata(key)
                .with_context(|| format!("the SSH key {} (--ssh-key / DIFY_GITOPS_SSH_KEY)", key.display()))?;
        }
        Ok(Self { ssh_key, https: https::Credentials::from_env(username) })
    }

    /// Callbacks for one fetch or push. libgit2 asks again after every refused credential, so each kind is
    /// offered once and then the callback fails with the reason.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let ssh_offered = Cell::new(0usize);
        callbacks.credentials(move |url, url_user, allowed| {
            let shown = redact(url);
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(url_user.unwrap_or("git"));
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                let user = url_user.unwrap_or("git");
                let candidates = self.ssh_candidates();
                let next = ssh_offered.get();
                ssh_offered.set(next + 1);
                return match candidates.get(next) {
                    Some(SshKey::Agent) => Cred::ssh_key_from_agent(user),
                    Some(SshKey::File(path)) => Cred::ssh_key(user, None, path, None),
                    None => Err(git2::Error::from_str(&no_ssh_key_message(&shown, &candidates))),
                };
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                // Only plain http:// gets here (https:// is the https transport's): a token would travel in clear.
                return Err(git2::Error::from_str(&format!(
                    "{shown} asks for credentials over plain HTTP, which would send them in clear: use its https:// URL"
                )));
            }
            Err(git2::Error::from_str(&format!("{shown} asks for a kind of credential dify-gitops does not offer")))
        });
        callbacks
    }

    /// Keys to offer, in order: the one named by `--ssh-key` alone; otherwise the agent, then the usual keys.
    fn ssh_candidates(&self) -> Vec<SshKey> {
        if let Some(key) = &self.ssh_key {
            return vec![SshKey::File(key.clone())];
        }
        let mut keys = Vec::new();
        if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            keys.push(SshKey::Agent);
        }
        if let Some(home) = std::env::var_os("HOME") {
            let dir = Path::new(&home).join(".ssh");
            keys.extend(
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|name| dir.join(name))
                    .filter(|p| p.is_file())
                    .map(SshKey::File),
            );
        }
        keys
    }
}

enum SshKey {
    Agent,
    File(PathBuf),
}

fn no_ssh_key_message(url: &str, tried: &[SshKey]) -> String {
    if tried.is_empty() {
        return format!(
            "{url} asks for an SSH key and none was found: pass --ssh-key FILE, or load the key into ssh-agent"
        );
    }
    let names: Vec<String> = tried
        .iter()
        .map(|k| match k {
            SshKey::Agent => "ssh-agent".to_string(),
            SshKey::File(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "{url} refused every SSH key offered ({}): add the public key to the repo as a deploy key with write access",
        names.join(", ")
    )
}

/// The git2 error of a fetch or push, with what to do about it when the SSH server's host key was refused.
pub fn explain(error: git2::Error, url: &str) -> anyhow::Error {
    if error.code() != git2::ErrorCode::Certificate || error.class() != git2::ErrorClass::Ssh {
        return error.into();
    }
    let (host, port) = host_and_port(url);
    let hint = format!(
        "the SSH host key of {host} is not in ~/.ssh/known_hosts or does not match it: check the server's \
         fingerprint with its admin, then `ssh-keyscan -p {} {host} >> ~/.ssh/known_hosts`",
        port.unwrap_or(22)
    );
    anyhow::Error::new(error).context(hint)
}

/// Host and port of `scheme://[user@]host[:port]/path` or scp-like `[user@]host:path`.
fn host_and_port(url: &str) -> (String, Option<u16>) {
    let (authority, scp_like) = match url.split_once("://") {
        Some((_, rest)) => (rest.split('/').next().unwrap_or(rest), false),
        None => (url.split(':').next().unwrap_or(url), true),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !scp_like && !host.ends_with(']') || host_port.starts_with('[') => {
            (host.to_string(), port.parse().ok())
        }
        _ => (host_port.to_string(), None),
    }
}

/// Proxy settings for libgit2's own transports (plain `http://`; SSH uses none) as git finds them: `http.proxy`,
/// then the proxy variables. `https://` is `https.rs`'s, which reads the variables itself.
pub fn proxy() -> ProxyOptions<'static> {
    let mut options = ProxyOptions::new();
    options.auto();
    options
}

/// Refuses a URL that carries a password or token: it would end up in the clone's config, logs and `ps`.
pub fn check_url(url: &str) -> Result<()> {
    if url_password(url).is_some() {
        bail!(
            "the ops repo URL {} carries a password or token: remove it from the URL and set {TOKEN_ENV} instead",
            redact(url)
        );
    }
    Ok(())
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url_password(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// The byte range of the password in `scheme://user:password@host/...`, if there is one.
fn url_password(url: &str) -> Option<(usize, usize)> {
    let after_scheme = url.find("://")? + 3;
    let authority_end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    let at = url[after_scheme..authority_end].rfind('@')? + after_scheme;
    let colon = url[after_scheme..at].find(':')? + after_scheme;
    Some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found_redacted_and_refused() {
        assert_eq!(redact("https://bot:s3cret@git.example.com/ops.git"), "https://bot:***@git.example.com/ops.git");
        assert_eq!(redact("https://git.example.com/ops.git"), "https://git.example.com/ops.git");
        assert_eq!(redact("ssh://git@git.example.com:2222/ops.git"), "ssh://git@git.example.com:2222/ops.git");
        assert_eq!(redact("git@github.com:org/ops.git"), "git@github.com:org/ops.git");
        // An @ in the path is not user info.
        assert_eq!(redact("https://git.example.com/a:b@c"), "https://git.example.com/a:b@c");
        let error = check_url("https://bot:s3cret@git.example.com/ops.git").unwrap_err().to_string();
        assert!(error.contains(TOKEN_ENV) && !error.contains("s3cret"), "{error}");
        assert!(check_url("https://bot@git.example.com/ops.git").is_ok());
    }

    #[test]
    fn hosts_and_ports_come_from_urls_and_scp_like_addresses() {
        assert_eq!(host_and_port("ssh://git@127.0.0.1:2222/srv/ops.git"), ("127.0.0.1".into(), Some(2222)));
        assert_eq!(host_and_port("ssh://git.example.com/ops.git"), ("git.example.com".into(), None));
        assert_eq!(host_and_port("git@github.com:org/ops.git"), ("github.com".into(), None));
        assert_eq!(host_and_port("https://bot@git.example.com:8443/ops.git"), ("git.example.com".into(), Some(8443)));
    }
}
