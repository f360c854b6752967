//! `dify-gitops sync --repo https://…` against a real git smart-HTTP server behind TLS with token auth
//! (tests/support/git_server.rs): libgit2 and OpenSSL push the overlay with the token from DIFY_GITOPS_GIT_TOKEN,
//! trust only the CA they are given, and the token never shows in output, the cached clone or the remote.

mod support;

use std::path::Path;
use std::process::Command;

use support::git_server::{GitHttpServer, GitHttpsServer};
use support::ops::OpsRemote as Ops;

const TOKEN: &str = "ghp_TestTokenThatMustNeverBePrinted0123";

/// `dify-gitops sync --host <host> --repo <url> <extra>` with `env` set; no token or CA unless `env` gives one.
fn sync(ops: &Ops, url: &str, host: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-gitops"));
    command
        .args(["sync", "--host", host, "--repo", url])
        .args(extra)
        .env("HOME", ops.dir.path())
        .env("XDG_CACHE_HOME", ops.cache_home())
        .env("SOPS_AGE_KEY_FILE", ops.key())
        .env_remove("DIFY_GITOPS_GIT_TOKEN")
        .env_remove("DIFY_GITOPS_GIT_USERNAME")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (output.status.code().unwrap(), text(output.stdout), text(output.stderr))
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
