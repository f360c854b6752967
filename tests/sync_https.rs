//! `dify-gitops sync --repo https://…` against a real git smart-HTTP server behind TLS with token auth
//! (tests/support/git_server.rs): libgit2 and OpenSSL push the overlay with the token from DIFY_GITOPS_GIT_TOKEN,
//! trust only the CA they are given, and the token never shows in output, the cached clone or the remote.

mod support;

use std::path::Path;
use std::process::Command;

use support::git_server::{GitHttpServer, GitHttpsServer};
use support::ops::OpsRemote as Ops;
use support::proxy::ConnectProxy;

const TOKEN: &str = "ghp_TestTokenThatMustNeverBePrinted0123";

/// `dify-gitops sync --host <host> --repo <url> <extra>` with `env` set; no token, CA or proxy unless `env` gives
/// one.
fn sync(ops: &Ops, url: &str, host: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = support::cli::command();
    command
        .args(["sync", "--host", host, "--repo", url])
        .args(extra)
        .env("HOME", ops.dir.path())
        .env("XDG_CACHE_HOME", ops.cache_home())
        .env("SOPS_AGE_KEY_FILE", ops.key());
    for (name, value) in env {
        command.env(name, value);
    }
    support::cli::run(&mut command).parts()
}

fn serve(ops: &Ops) -> (GitHttpsServer, String) {
    let server = GitHttpServer::start_https(ops.dir.path(), TOKEN);
    let url = format!("{}/ops.git", server.url);
    (server, url)
}

/// Every file under `dir` (the cached clone, say) that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep").args(["-rlF", needle]).arg(dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn sync_pushes_over_https_with_the_token_from_the_environment() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let ca = server.ca_file.to_str().unwrap().to_string();
    let env = [("DIFY_GITOPS_GIT_TOKEN", TOKEN), ("GIT_SSL_CAINFO", ca.as_str())];

    let (code, stdout, stderr) = sync(&ops, &url, "192.0.2.10", &[], &env);
    assert_eq!(code, 6, "{stdout}{stderr}\n{}", server.log());
    assert_eq!(ops.commits(), 2, "config + the overlay, pushed over https");
    assert!(server.requests().iter().any(|r| r.target.contains("git-receive-pack") && r.authorized && r.status == 200));
    assert_eq!(server.authorized_users(), ["x-access-token"], "GitHub's user name for a token, by default");

    let (code, stdout, stderr) = sync(&ops, &url, "192.0.2.11", &["--git-username", "ops-bot"], &env);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(ops.head_message().contains("external.host 192.0.2.10 -> 192.0.2.11"));
    assert!(server.authorized_users().contains(&"ops-bot".to_string()), "--git-username is sent");
    assert_eq!(sync(&ops, &url, "192.0.2.11", &[], &env).0, 0, "no drift, no commit");

    // SSL_CERT_FILE, OpenSSL's own variable, works as well as git's GIT_SSL_CAINFO.
    let env = [("DIFY_GITOPS_GIT_TOKEN", TOKEN), ("SSL_CERT_FILE", ca.as_str())];
    assert_eq!(sync(&ops, &url, "192.0.2.12", &["--no-cache"], &env).0, 6);

    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(TOKEN), "the token leaked to {name}");
    }
    assert_eq!(files_containing(&ops.cache_home(), TOKEN), Vec::<String>::new(), "the token is in the cache");
    assert_eq!(files_containing(&ops.remote(), TOKEN), Vec::<String>::new(), "the token is in the remote");
}

#[test]
fn a_missing_or_wrong_token_and_an_untrusted_server_are_clear_errors() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let ca = server.ca_file.to_str().unwrap().to_string();

    let (code, stdout, stderr) = sync(&ops, &url, "192.0.2.10", &[], &[("GIT_SSL_CAINFO", &ca)]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("asks for credentials: set DIFY_GITOPS_GIT_TOKEN"), "{stderr}");

    let wrong = "ghp_WrongTokenWrongTokenWrongToken0000";
    let (code, stdout, stderr) =
        sync(&ops, &url, "192.0.2.10", &[], &[("GIT_SSL_CAINFO", &ca), ("DIFY_GITOPS_GIT_TOKEN", wrong)]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("refused the token in DIFY_GITOPS_GIT_TOKEN"), "{stderr}");
    assert!(!stderr.contains(wrong) && !stdout.contains(wrong), "the token is never printed");
    let attempts = server.requests().iter().filter(|r| r.user.is_some()).count();
    assert!(attempts <= 2, "the token is offered once per request, not in a loop: {}", server.log());

    // No CA given: the system roots do not know the server's, and nothing is sent to it.
    let before = server.requests().len();
    let (code, stdout, stderr) = sync(&ops, &url, "192.0.2.10", &[], &[("DIFY_GITOPS_GIT_TOKEN", TOKEN)]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("HTTPS certificate of 127.0.0.1 is not trusted") && stderr.contains("GIT_SSL_CAINFO"),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), before, "no request reached the untrusted server");

    let missing_repo = url.replace("/ops.git", "/missing.git");
    let env = [("GIT_SSL_CAINFO", ca.as_str()), ("DIFY_GITOPS_GIT_TOKEN", TOKEN)];
    let (code, _, stderr) = sync(&ops, &missing_repo, "192.0.2.10", &[], &env);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such repository (HTTP 404)") && stderr.contains("check --repo"), "{stderr}");

    let missing_ca = ops.dir.path().join("no-such-ca.pem");
    let env = [("GIT_SSL_CAINFO", missing_ca.to_str().unwrap()), ("DIFY_GITOPS_GIT_TOKEN", TOKEN)];
    let (code, _, stderr) = sync(&ops, &url, "192.0.2.10", &[], &env);
    assert_eq!(code, 1);
    assert!(stderr.contains("no-such-ca.pem") && stderr.contains("GIT_SSL_CAINFO"), "{stderr}");

    assert_eq!(ops.commits(), 1, "the ops repo is untouched");
}

#[test]
fn a_token_inside_the_url_is_refused_without_being_echoed() {
    let ops = Ops::new();
    let (server, _) = serve(&ops);
    let url = server.url.replacen("https://", &format!("https://bot:{TOKEN}@"), 1) + "/ops.git";
    let (code, stdout, stderr) = sync(&ops, &url, "192.0.2.10", &[], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("carries a password or token") && stderr.contains("DIFY_GITOPS_GIT_TOKEN"), "{stderr}");
    assert!(stderr.contains("https://bot:***@127.0.0.1"), "the URL is shown redacted: {stderr}");
    assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
    assert!(server.requests().is_empty(), "nothing was sent");
    assert!(!ops.cache_home().exists(), "nothing was cloned");
}

/// `host:port` of a server URL (`https://127.0.0.1:<port>`), as a CONNECT names it.
fn authority(url: &str) -> String {
    url.split_once("://").map_or(url, |(_, rest)| rest).to_string()
}

/// True when `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the proxy saw holds neither the token nor its Basic credentials, and every tunnel carried TLS (its first
/// byte is a TLS handshake record, 0x16): the token only ever crossed the proxy encrypted.
fn assert_token_stayed_inside_tls(proxy: &ConnectProxy) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    for request in proxy.requests() {
        assert!(!request.head.contains(TOKEN) && !request.head.contains(&basic), "token in {:?}", request.head);
        if request.status == 200 {
            assert_eq!(request.client_bytes.first(), Some(&0x16), "not TLS through the tunnel: {}", proxy.log());
        }
        for secret in [TOKEN.as_bytes(), basic.as_bytes()] {
            assert!(!contains(&request.client_bytes, secret), "the token crossed the proxy in clear");
        }
    }
}

#[test]
fn sync_goes_through_the_https_proxy_from_the_environment() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let proxy = ConnectProxy::start();
    let ca = server.ca_file.to_str().unwrap().to_string();

    // Each variable the README names, alone; ureq does not exempt loopback, so 127.0.0.1 goes through the proxy.
    for (round, variable) in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"].into_iter().enumerate() {
        let before = proxy.tunnels().len();
        let host = format!("192.0.2.{}", 10 + round);
        let env = [(variable, proxy.url.as_str()), ("DIFY_GITOPS_GIT_TOKEN", TOKEN), ("GIT_SSL_CAINFO", &ca)];
        let (code, stdout, stderr) = sync(&ops, &url, &host, &[], &env);
        assert_eq!(code, 6, "{variable}: {stdout}{stderr}\nproxy:\n{}server:\n{}", proxy.log(), server.log());
        assert!(proxy.tunnels().len() > before, "{variable}: no tunnel through the proxy: {}", proxy.log());
    }
    assert_eq!(ops.commits(), 4, "config + an overlay per run, pushed through the proxy");

    let target = authority(&server.url);
    assert!(proxy.tunnels().iter().all(|t| *t == target), "tunnels to {target} only: {}", proxy.log());
    assert_eq!(
        proxy.tunnels().len(),
        server.requests().len(),
        "every request reached the server through a tunnel of its own (the server closes each connection)\n\
         proxy:\n{}server:\n{}",
        proxy.log(),
        server.log()
    );
    assert!(server.requests().iter().any(|r| r.target.contains("git-receive-pack") && r.authorized && r.status == 200));
    assert_token_stayed_inside_tls(&proxy);
}

#[test]
fn no_proxy_sends_the_host_direct() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let proxy = ConnectProxy::start();
    let ca = server.ca_file.to_str().unwrap().to_string();

    for (round, variable) in ["NO_PROXY", "no_proxy"].into_iter().enumerate() {
        let host = format!("192.0.2.{}", 10 + round);
        let env = [
            ("HTTPS_PROXY", proxy.url.as_str()),
            (variable, "127.0.0.1"),
            ("DIFY_GITOPS_GIT_TOKEN", TOKEN),
            ("GIT_SSL_CAINFO", &ca),
        ];
        let (code, stdout, stderr) = sync(&ops, &url, &host, &[], &env);
        assert_eq!(code, 6, "{variable}: {stdout}{stderr}\n{}", server.log());
    }
    assert_eq!(ops.commits(), 3, "config + an overlay per run, pushed direct");
    assert!(proxy.requests().is_empty(), "the proxy was used for a NO_PROXY host: {}", proxy.log());
}

#[test]
fn a_proxy_that_refuses_is_a_clear_error_and_proxy_credentials_come_from_its_url() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let ca = server.ca_file.to_str().unwrap().to_string();
    let with = |proxy_url: &str| {
        sync(
            &ops,
            &url,
            "192.0.2.10",
            &[],
            &[("HTTPS_PROXY", proxy_url), ("DIFY_GITOPS_GIT_TOKEN", TOKEN), ("GIT_SSL_CAINFO", &ca)],
        )
    };

    // Nothing listens where the proxy should be: an error that names the proxy (ureq's own words would read as
    // if the git server had refused), and no falling back to a direct connection.
    let refusing = ConnectProxy::refusing_url();
    let (code, stdout, stderr) = with(&refusing);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("cannot reach the ops repo") && stderr.contains("Connection refused"), "{stderr}");
    let named = format!("through the proxy {} from the environment", refusing.trim_start_matches("http://"));
    assert!(stderr.contains(&named), "{stderr}");

    // A proxy that wants credentials the proxy URL does not carry answers 407, which ureq names.
    let proxy = ConnectProxy::start_requiring("ops-proxy", "proxy-secret-4711");
    let (code, stdout, stderr) = with(&proxy.url);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("CONNECT proxy failed: proxy server responded 407"), "{stderr}");
    assert!(proxy.tunnels().is_empty() && proxy.requests().len() == 1, "{}", proxy.log());
    assert!(server.requests().is_empty(), "nothing went direct: {}", server.log());
    assert_eq!(ops.commits(), 1, "the ops repo is untouched");

    // With them in the proxy URL (`http://user:password@host:port`) ureq sends Proxy-Authorization and it tunnels.
    let with_credentials = proxy.url.replacen("http://", "http://ops-proxy:proxy-secret-4711@", 1);
    let (code, stdout, stderr) = with(&with_credentials);
    assert_eq!(code, 6, "{stdout}{stderr}\n{}", proxy.log());
    assert_eq!(proxy.tunnels().len(), server.requests().len(), "{}", proxy.log());
    assert!(!stdout.contains("proxy-secret-4711") && !stderr.contains("proxy-secret-4711"));
    assert_token_stayed_inside_tls(&proxy);
}

#[test]
fn a_working_copy_cloned_over_https_is_pushed_with_the_token() {
    let ops = Ops::new();
    let (server, url) = serve(&ops);
    let ca = server.ca_file.to_str().unwrap().to_string();
    // The operator's checkout, made with git itself; its origin is the https:// URL without credentials.
    let work = ops.dir.path().join("work");
    let clone = Command::new("git")
        .args(["-c", &format!("http.extraHeader=Authorization: Basic {}", basic())])
        .args(["clone", "-q", &url])
        .arg(&work)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_SSL_CAINFO", &ca) // wins over http.sslCAInfo, and a machine may set it for everything
        .env("HOME", ops.dir.path())
        .output()
        .unwrap();
    assert!(clone.status.success(), "git clone: {}", String::from_utf8_lossy(&clone.stderr));

    let env = [("DIFY_GITOPS_GIT_TOKEN", TOKEN), ("GIT_SSL_CAINFO", ca.as_str())];
    let (code, stdout, stderr) = sync(&ops, work.to_str().unwrap(), "192.0.2.10", &[], &env);
    assert_eq!(code, 6, "{stdout}{stderr}\n{}", server.log());
    assert!(stdout.contains("pushed to main"), "{stdout}");
    assert_eq!(ops.commits(), 2, "the commit reached the remote over https");
    assert!(!ops.cache_home().exists(), "a working copy is used in place, not cached");
}

/// `x-access-token:TOKEN` as an HTTP Basic credential, for the git CLI's own clone.
fn basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
}
