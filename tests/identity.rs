//! Age identities stay private, on real components (`age-keygen`, `git`, `sops`, `strace`): an
//! identity given where a recipient belongs is refused without being echoed, a readable identity file is warned
//! about, no identity ever reaches the ops repo, and secrets are never written anywhere in plain text — no temp
//! file, no write(2) that carries one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod support;

use support::ops::{OpsRemote as Ops, prod_config, run};

/// A bare ops remote whose config lists `recipients(recipient, identity)`, and the operator's key (mode 0600).
fn ops_remote(recipients: impl Fn(&str, &str) -> String) -> Ops {
    Ops::with_config(|recipient, identity| prod_config(&recipients(recipient, identity)))
}

/// The content of every object in the remote (commits, trees, blobs), uncompressed.
fn all_objects(ops: &Ops) -> String {
    let out = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .current_dir(ops.remote())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dify-gitops args…` with SOPS_AGE_KEY_FILE set to `identity` (or unset): (exit code, stdout, stderr).
fn cli(args: &[&str], identity: Option<&Path>, env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut command = support::cli::command();
    command.args(args);
    // sync's cached clone goes beside the remote, into the test's own temp dir, and is removed with it.
    if let Some(remote) = args.iter().position(|a| *a == "--repo").and_then(|i| args.get(i + 1)) {
        command.env("XDG_CACHE_HOME", Path::new(remote).parent().unwrap().join("cache"));
    }
    if let Some(identity) = identity {
        command.env("SOPS_AGE_KEY_FILE", identity);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    support::cli::run(&mut command).parts()
}

/// The identity's key material without its prefix: a leak of any part of it must be caught.
fn body(identity: &str) -> &str {
    &identity["AGE-SECRET-KEY-1".len()..]
}

#[test]
fn an_identity_given_as_a_recipient_is_refused_and_not_echoed() {
    // On the command line.
    let ops = ops_remote(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let (code, stdout, stderr) = cli(
        &["sync", "--host", "192.0.2.10", "--recipient", &ops.identity, "--repo", remote.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("is a private identity (AGE-SECRET-KEY-…), not a recipient"), "{stderr}");
    assert!(stderr.contains("age-keygen -y"), "the message says what to pass instead: {stderr}");
    assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)), "the identity was echoed");
    assert_eq!(ops.commits(), 1, "the ops repo is untouched");

    // In the config file, for render too.
    let ops = ops_remote(|_, identity| identity.to_string());
    let work = ops.dir.path().join("work");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), work.to_str().unwrap()], None);
    for args in [
        vec!["sync", "--host", "192.0.2.10", "--repo", ops.remote().to_str().unwrap()],
        vec!["render", "--host", "192.0.2.10", "--repo-dir", work.to_str().unwrap()],
    ] {
        let (code, stdout, stderr) = cli(&args, Some(&ops.key()), &[]);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("is a private identity"), "{stderr}");
        assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)), "{args:?} echoed the identity");
    }
    assert_eq!(ops.commits(), 1);
    assert!(!work.join("clusters").exists(), "render wrote nothing");
}

#[test]
fn an_identity_file_readable_by_others_is_warned_about() {
    let ops = ops_remote(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let sync = ["sync", "--host", "192.0.2.10", "--repo", remote.to_str().unwrap()];

    let (code, _, stderr) = cli(&sync, Some(&ops.key()), &[]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!stderr.contains("chmod 600"), "0600 is fine: {stderr}");

    std::fs::set_permissions(ops.key(), PermissionsExt::from_mode(0o644)).unwrap();
    let (code, _, stderr) = cli(&[&sync[..], &["--rotate", "redis-password"]].concat(), Some(&ops.key()), &[]);
    assert_eq!(code, 6, "a warning, not an error: {stderr}");
    assert!(stderr.contains("is readable by others (mode 644): `chmod 600` it"), "{stderr}");
    assert!(stderr.contains(ops.key().to_str().unwrap()), "names the file: {stderr}");
    assert!(!stderr.contains(body(&ops.identity)));

    let (code, stdout, stderr) = cli(&["audit", "--repo-dir", remote.to_str().unwrap()], Some(&ops.key()), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("chmod 600"), "audit warns too: {stderr}");
}

#[test]
fn sync_never_writes_the_identity_into_the_ops_repo() {
    let ops = ops_remote(|recipient, _| recipient.to_string());
    // A working copy with the operator's key file lying in it, untracked and not ignored.
    let work = ops.dir.path().join("work");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), work.to_str().unwrap()], None);
    let key_in_work = work.join("keys.txt");
    std::fs::copy(ops.key(), &key_in_work).unwrap();
    std::fs::set_permissions(&key_in_work, PermissionsExt::from_mode(0o600)).unwrap();
    for args in [
        vec!["sync", "--host", "192.0.2.10", "--repo", work.to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.11", "--rotate", "postgres-password", "--repo", work.to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.12", "--repo", ops.remote().to_str().unwrap()],
        vec!["sync", "--host", "192.0.2.12", "--rotate", "redis-password", "--repo", ops.remote().to_str().unwrap()],
    ] {
        let (code, stdout, stderr) = cli(&args, Some(&key_in_work), &[]);
        assert_eq!(code, 6, "{args:?}: {stdout}{stderr}");
        assert!(!format!("{stdout}{stderr}").contains(body(&ops.identity)));
    }
    assert_eq!(ops.commits(), 5);
    let objects = all_objects(&ops);
    assert!(objects.contains("ENC[AES256_GCM"), "the dump holds the overlay");
    assert!(!objects.contains(body(&ops.identity)), "the identity is in an object of the ops repo");
    assert!(!objects.contains("AGE-SECRET-KEY-"), "an identity is in an object of the ops repo");
    let tracked = run("git", &["ls-tree", "-r", "--name-only", "main"], Some(&ops.remote()));
    assert!(!tracked.contains("keys.txt"), "{tracked}");
    let (code, stdout, _) = cli(&["audit", "--history", "--repo-dir", ops.remote().to_str().unwrap()], None, &[]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn plaintext_secrets_never_reach_a_temp_file_or_any_write() {
    let ops = ops_remote(|recipient, _| recipient.to_string());
    let remote = ops.remote();
    let tmp = tempfile::tempdir().unwrap();
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--host", "192.0.2.10", "--repo", remote.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = cli(&args, Some(&ops.key()), &[("TMPDIR", tmp.path())]);
        assert_eq!(code, 6, "{stdout}{stderr}");
    };
    sync(&[]);
    sync(&["--rotate", "redis-password"]);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "sync left files in TMPDIR: {left:?}");

    // Every byte the process (and its children) writes to any file descriptor, traced by strace: none carries a
    // secret, though sync decrypts them all (carry-over) and generates one (rotation).
    assert_strace_installed();
    let (code, stderr, traced) =
        traced(&ops, tmp.path(), "writes", &["sync", "--host", "192.0.2.10", "--rotate", "sandbox-api-key"], "");
    assert_traced(&traced, &stderr);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(traced.contains("ENC[AES256_GCM"), "the trace holds the writes of the encrypted overlay");
    let secrets = ops.secret_values();
    assert_eq!(secrets.len(), dify_gitops::overlay::SECRET_NAMES.len());
    for secret in &secrets {
        assert!(!traced.contains(secret.as_str()), "a secret was written in plain text by some write(2)");
    }
    assert!(!traced.contains(body(&ops.identity)), "the identity was written somewhere");

    // The cached clone sync keeps between runs holds only what the ops repo holds: no plaintext either.
    let cached = Command::new("grep")
        .arg("-rlF")
        .args(secrets.iter().flat_map(|s| ["-e", s.as_str()]))
        .arg(ops.cache_home())
        .output()
        .unwrap();
    assert!(ops.cache_home().is_dir(), "the syncs above used the cache");
    assert!(
        cached.stdout.is_empty(),
        "plaintext secrets in the cached clone: {}",
        String::from_utf8_lossy(&cached.stdout)
    );
}

/// strace is one of the pinned test tools: without it the write(2) checks cannot run, which is a failure.
fn assert_strace_installed() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is not installed: scripts/test-tools install (it comes from apt-get) and put it on PATH"
    );
}

/// A trace with no write at all means strace could not trace (ptrace refused): the checks would prove nothing, so
/// that is a failure, never a silent pass.
fn assert_traced(traced: &str, stderr: &str) {
    assert!(
        !traced.is_empty(),
        "strace traced nothing, so the plaintext checks cannot run: ptrace is refused here (allow it: \
         kernel.yama.ptrace_scope <= 1, or CAP_SYS_PTRACE in a container). stderr: {stderr}"
    );
}

/// Runs `dify-gitops args…` under strace with `stdin` piped in: (exit code, stderr, every traced write).
fn traced(ops: &Ops, tmp: &Path, name: &str, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    let trace = tmp.join(format!("{name}.strace"));
    let mut child = support::cli::hermetic(&mut Command::new("strace"))
        .args(["-f", "-qq", "-s", "1000000", "-e", "trace=write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg"])
        .arg("-o")
        .arg(&trace)
        .arg(support::cli::BIN)
        .args(args)
        .arg("--repo")
        .arg(ops.remote())
        .env("SOPS_AGE_KEY_FILE", ops.key())
        .env("TMPDIR", tmp)
        .env("XDG_CACHE_HOME", ops.cache_home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let writes = std::fs::read_to_string(&trace).unwrap_or_default();
    std::fs::remove_file(&trace).ok();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), writes)
}

#[test]
fn a_value_given_to_secret_set_is_never_written_in_plain_text() {
    assert_strace_installed();
    let ops = ops_remote(|recipient, _| recipient.to_string());
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = cli(
        &["sync", "--host", "192.0.2.10", "--repo", ops.remote().to_str().unwrap()],
        Some(&ops.key()),
        &[("TMPDIR", tmp.path())],
    );
    assert_eq!(code, 6, "{stderr}");
    let value = "sk-traced-value-0c1d2e3f4a5b6c7d";

    // secret set reads the value from stdin (a read(2), not traced) and writes it only encrypted; a later sync
    // that re-encrypts (a rotation) decrypts it and carries it through, writing it only encrypted too.
    let mut writes = String::new();
    for (name, args, stdin) in [
        ("set", vec!["secret", "set", "openai-api-key"], format!("{value}\n")),
        ("sync", vec!["sync", "--host", "192.0.2.11", "--rotate", "redis-password", "-vv"], String::new()),
    ] {
        let (code, stderr, traced) = traced(&ops, tmp.path(), name, &args, &stdin);
        assert_traced(&traced, &stderr);
        assert_eq!(code, Some(6), "{args:?}: {stderr}");
        writes.push_str(&traced);
    }
    assert!(writes.contains("ENC[AES256_GCM"), "the trace holds the writes of the encrypted Secret");
    let secret = ops.decrypted_secrets();
    assert_eq!(secret["stringData"]["openai-api-key"], value, "the value made it into the Secret");
    assert!(!writes.contains(value), "the value was written in plain text by some write(2)");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
    let cached = Command::new("grep").args(["-rlF", "-e", value]).arg(ops.cache_home()).output().unwrap();
    assert!(cached.stdout.is_empty(), "the value in the cached clone: {}", String::from_utf8_lossy(&cached.stdout));
    let objects = all_objects(&ops);
    assert!(!objects.contains(value), "the value is in an object of the ops repo");
}
