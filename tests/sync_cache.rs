//! The cached clone `sync` keeps between runs (~/.cache/dify-gitops/ops-repos): whatever a crashed run or a
//! curious operator leaves in it never reaches a commit, the remote's history always wins, and a broken cache is
//! rebuilt. Real git remotes and the real `git` CLI.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use support::ops::{OpsRemote as Ops, git, run};

const HOST: [&str; 2] = ["--host", "192.0.2.10"];

/// The one cached clone under the remote's cache home.
fn cached_clone(ops: &Ops) -> PathBuf {
    let root = ops.cache_home().join("dify-gitops/ops-repos");
    let dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "one cached clone per remote: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Files of the remote's HEAD commit.
fn files_at_head(ops: &Ops) -> Vec<String> {
    let out = git(&ops.remote(), &["ls-tree", "-r", "--name-only", "HEAD"]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn the_cache_is_private_and_reused_and_no_cache_leaves_none() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    let clone = cached_clone(&ops);
    let mode = std::fs::metadata(clone.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache holds the ops repo: only its owner may read it");
    let marker = git(&clone, &["rev-parse", "--git-dir"]);
    assert_eq!(marker.trim(), ".git");

    // The second run fetches into the same clone (its object store keeps the first run's objects).
    let before = std::fs::metadata(clone.join(".git/config")).unwrap().modified().unwrap();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.11"]).0, 6);
    assert_eq!(cached_clone(&ops), clone);
    assert_eq!(std::fs::metadata(clone.join(".git/config")).unwrap().modified().unwrap(), before, "not re-cloned");

    // A cache directory someone opened to others is made private again.
    std::fs::set_permissions(clone.parent().unwrap(), PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.11"]).0, 0);
    let mode = std::fs::metadata(clone.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "chmod 700 again");

    // --no-cache clones into a temp dir and leaves no cache behind.
    let other = Ops::new();
    let (code, _, stderr) = other.sync(&["sync", HOST[0], HOST[1], "--no-cache"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!other.cache_home().exists(), "--no-cache must not create a cache");
}

#[test]
fn leftovers_in_the_cached_clone_never_reach_a_commit() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    let clone = cached_clone(&ops);
    let overlay = clone.join("apps/prod/dify");
    // What a run killed half-way, or an operator poking around, might leave behind.
    std::fs::write(overlay.join("plain-secrets.yaml"), "SECRET_KEY: leaked\n").unwrap();
    std::fs::write(overlay.join("dify-values.yaml"), "tampered: true\n").unwrap();
    std::fs::create_dir_all(clone.join("apps/prod/dify/tmp")).unwrap();
    std::fs::write(clone.join("apps/prod/dify/tmp/x"), "x").unwrap();
    git(&clone, &["add", "apps/prod/dify/plain-secrets.yaml"]);
    git(&clone, &["commit", "-qm", "a local commit that was never pushed", "--no-verify"]);

    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.11"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(ops.commits(), 3, "config, overlay, the address change");
    assert!(ops.head_message().contains("external.host 192.0.2.10 -> 192.0.2.11"), "{}", ops.head_message());
    let files = files_at_head(&ops);
    assert_eq!(
        files,
        ["apps/prod/dify/dify-secrets.sops.yaml", "apps/prod/dify/dify-values.yaml", "dify-gitops.yaml"],
        "only the overlay and the config"
    );
    assert!(ops.show("apps/prod/dify/dify-values.yaml").contains("host: \"192.0.2.11\""));
    assert!(!overlay.join("plain-secrets.yaml").exists() && !overlay.join("tmp").exists(), "untracked files removed");
}

#[test]
fn commits_pushed_by_others_are_kept_and_a_deleted_review_branch_starts_afresh() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    // Someone else pushes a file, with git, from their own clone.
    let theirs = ops.dir.path().join("theirs");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), theirs.to_str().unwrap()], None);
    std::fs::write(theirs.join("NOTES.md"), "ops notes\n").unwrap();
    git(&theirs, &["add", "NOTES.md"]);
    git(&theirs, &["commit", "-qm", "notes"]);
    git(&theirs, &["push", "-q", "origin", "HEAD:main"]);

    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.11"]).0, 6);
    assert!(files_at_head(&ops).contains(&"NOTES.md".to_string()), "the other commit is an ancestor, not lost");
    git(&ops.remote(), &["merge-base", "--is-ancestor", "HEAD~1", "HEAD"]);

    // A review branch, merged and deleted on the remote, then asked for again: it starts from main, not from
    // the stale commit the cache saw before.
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.12", "--branch", "dify-update"]).0, 6);
    let stale = git(&ops.remote(), &["rev-parse", "dify-update"]);
    git(&ops.remote(), &["branch", "-D", "dify-update"]);
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.13", "--branch", "dify-update"]).0, 6);
    let parent = git(&ops.remote(), &["rev-parse", "dify-update~1"]);
    assert_eq!(parent, git(&ops.remote(), &["rev-parse", "main"]), "the new review branch starts from main");
    assert_ne!(parent, stale);
}

#[test]
fn a_broken_cache_is_rebuilt_and_the_sync_succeeds() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    let clone = cached_clone(&ops);
    // Every object and ref gone: libgit2 can open it but not check anything out.
    std::fs::remove_dir_all(clone.join(".git/objects")).unwrap();
    std::fs::create_dir_all(clone.join(".git/objects")).unwrap();

    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.11"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stderr.contains("is unusable") && stderr.contains("cloning afresh"), "{stderr}");
    assert!(ops.head_message().contains("external.host 192.0.2.10 -> 192.0.2.11"));
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.11"]).0, 0, "the rebuilt cache works: nothing to do");
}

#[test]
fn a_run_waits_for_the_one_holding_the_cache_and_says_so() {
    use std::os::fd::AsRawFd;
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    let clone = cached_clone(&ops);
    // Hold the clone's lock as a concurrent run would.
    let lock = std::fs::OpenOptions::new().write(true).open(clone.with_extension("lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);

    let mut child = support::cli::command()
        .args(["sync", "--host", "192.0.2.11", "--repo"])
        .arg(ops.remote())
        .env("SOPS_AGE_KEY_FILE", ops.key())
        .env("XDG_CACHE_HOME", ops.cache_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "the second run must wait for the lock");
    assert_eq!(ops.commits(), 2, "and change nothing meanwhile");

    drop(lock);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("another dify-gitops run is using the cached clone") && stderr.contains("waiting"),
        "{stderr}"
    );
    assert!(ops.head_message().contains("external.host 192.0.2.10 -> 192.0.2.11"));
}
