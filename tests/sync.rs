//! `dify-gitops sync`, `render` and `diff` on real components: bare git remotes, the real `sops`, `age` and
//! `git` CLIs, and the real kube-apiserver for discovery.

mod support;

use std::path::Path;
use std::process::Command;

use support::ops::{OpsRemote as Ops, git, run};
use support::{Testbed, set_load_balancer_ip, unique_namespace};

const HOST: [&str; 2] = ["--host", "192.0.2.10"];

#[test]
fn the_first_sync_commits_an_overlay_that_sops_and_age_can_read() {
    let ops = Ops::new();
    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "exit 6 = changed: {stdout}{stderr}");
    assert_eq!(ops.commits(), 2);
    let headline = format!(
        "dify/prod: create overlay (external.host = 192.0.2.10, images.dify.tag = 1.13.3, {} secrets generated)",
        dify_gitops::overlay::SECRET_NAMES.len()
    );
    assert!(ops.head_message().starts_with(&headline), "{}", ops.head_message());

    let values = ops.show("apps/prod/dify/dify-values.yaml");
    assert!(
        values.contains("host: \"192.0.2.10\"") && values.contains("reconcile.fluxcd.io/watch: Enabled"),
        "{values}"
    );
    let secret = ops.decrypted_secrets();
    assert_eq!(secret["metadata"]["name"], "dify-secrets");
    let data = secret["stringData"].as_object().unwrap();
    assert_eq!(data.len(), dify_gitops::overlay::SECRET_NAMES.len());
    assert!(data["dify-secret-key"].as_str().unwrap().len() == 64);
    assert!(data["init-password"].as_str().unwrap().len() == 24, "INIT_PASSWORD guards the setup page");

    // The age CLI alone unwraps the data key from the file.
    let file = ops.show("apps/prod/dify/dify-secrets.sops.yaml");
    let block = file.split("enc: |\n").nth(1).unwrap();
    let end = block.find("-----END AGE ENCRYPTED FILE-----").unwrap() + "-----END AGE ENCRYPTED FILE-----".len();
    let armored: String = block[..end].lines().map(|l| format!("{}\n", l.trim())).collect();
    let key_file = ops.dir.path().join("wrapped");
    std::fs::write(&key_file, armored).unwrap();
    let out = Command::new("age").args(["-d", "-i"]).arg(ops.key()).arg(&key_file).output().unwrap();
    assert!(out.status.success(), "age -d: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 32, "a 32-byte data key");
}

#[test]
fn a_hundred_syncs_without_drift_make_exactly_one_commit() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", HOST[0], HOST[1]]).0, 6);
    for _ in 0..100 {
        let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
        assert_eq!(code, 0, "no drift must mean exit 0: {stdout}{stderr}");
    }
    assert_eq!(ops.commits(), 2, "config + the one overlay commit");
}

#[test]
fn a_changed_address_is_one_commit_naming_the_change_and_secrets_are_carried_over() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let before = ops.decrypted_secrets()["stringData"].clone();
    let (code, stdout, _) = ops.sync(&["sync", "--host", "192.0.2.11"]);
    assert_eq!(code, 6);
    assert!(stdout.contains("external.host 192.0.2.10 -> 192.0.2.11"), "{stdout}");
    assert_eq!(ops.commits(), 3);
    assert!(ops.head_message().starts_with("dify/prod: external.host 192.0.2.10 -> 192.0.2.11\n"));
    assert_eq!(ops.decrypted_secrets()["stringData"], before, "secrets never change with the address");

    // Without the identity the ciphertext is kept byte for byte and only the values change.
    let secrets_before = ops.show("apps/prod/dify/dify-secrets.sops.yaml");
    let (code, _, stderr) = ops.cli(&["sync", "--host", "192.0.2.12"], None);
    assert_eq!(code, 6, "{stderr}");
    assert_eq!(ops.show("apps/prod/dify/dify-secrets.sops.yaml"), secrets_before);
    assert!(ops.show("apps/prod/dify/dify-values.yaml").contains("192.0.2.12"));
}

#[test]
fn rotation_changes_only_the_named_secret_and_secret_key_is_refused() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let before = ops.decrypted_secrets()["stringData"].clone();
    let (code, stdout, _) = ops.sync(&["sync", HOST[0], HOST[1], "--rotate", "redis-password"]);
    assert_eq!(code, 6);
    assert!(stdout.contains("secret redis-password rotated"));
    let after = ops.decrypted_secrets()["stringData"].clone();
    for (name, value) in before.as_object().unwrap() {
        assert_eq!(after[name] != *value, name == "redis-password", "{name}");
    }
    let (code, _, stderr) = ops.sync(&["sync", HOST[0], HOST[1], "--rotate", "dify-secret-key"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("must never change"), "{stderr}");
    let (code, _, stderr) = ops.cli(&["sync", HOST[0], HOST[1], "--rotate", "redis-password"], None);
    assert_eq!(code, 1);
    assert!(stderr.contains("needs the operator's age identity"), "{stderr}");
}

#[test]
fn a_secret_encrypted_by_the_real_sops_is_carried_over() {
    let ops = Ops::new();
    // An operator wrote the overlay's Secret by hand with `sops -e`, with a SECRET_KEY of their own.
    let seed = ops.dir.path().join("hand");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
    let dir = seed.join("apps/prod/dify");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dify-secrets\n  namespace: dify\ntype: Opaque\n\
                 stringData:\n  dify-secret-key: operator-chosen-secret-key\n  postgres-password: pg-by-hand\n";
    std::fs::write(dir.join("dify-secrets.sops.yaml"), plain).unwrap();
    run(
        "sops",
        &["-e", "-i", "--encrypted-regex", "^(data|stringData)$", "--age", &ops.recipient, "dify-secrets.sops.yaml"],
        Some(&dir),
    );
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "hand-made secret"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);

    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    let data = ops.decrypted_secrets()["stringData"].clone();
    assert_eq!(data["dify-secret-key"], "operator-chosen-secret-key");
    assert_eq!(data["postgres-password"], "pg-by-hand");
    assert_eq!(
        data.as_object().unwrap().len(),
        dify_gitops::overlay::SECRET_NAMES.len(),
        "the missing internal secrets are generated"
    );
    assert!(stdout.contains("secret redis-password generated") && !stdout.contains("dify-secret-key generated"));
}

#[test]
fn dry_run_and_diff_report_changes_and_change_nothing() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let (code, stdout, _) = ops.sync(&["sync", "--dry-run", "--host", "192.0.2.99"]);
    assert_eq!((code, stdout.contains("external.host 192.0.2.10 -> 192.0.2.99")), (6, true), "{stdout}");
    let (code, stdout, _) =
        ops.sync(&["diff", "--host", "192.0.2.99", "--rotate", "sandbox-api-key", "--output", "json"]);
    assert_eq!(code, 6);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["changes"],
        serde_json::json!(["external.host 192.0.2.10 -> 192.0.2.99", "secret sandbox-api-key rotated"])
    );
    assert_eq!(report["pushed"], false);
    assert_eq!(ops.commits(), 2, "nothing was committed");
    assert_eq!(ops.sync(&["diff", HOST[0], HOST[1]]).0, 0, "no difference: exit 0");
}

#[test]
fn a_review_branch_gets_the_change_and_main_stays() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let (code, stdout, _) = ops.sync(&["sync", "--host", "192.0.2.20", "--branch", "dify-update"]);
    assert_eq!(code, 6, "{stdout}");
    assert_eq!(ops.commits(), 2);
    let branch = git(&ops.remote(), &["show", "dify-update:apps/prod/dify/dify-values.yaml"]);
    assert!(branch.contains("192.0.2.20"));
}

#[test]
fn two_racing_syncs_never_lose_an_update() {
    // Each racer rotates a different secret: whoever pushes second must re-plan on the first one's commit and
    // carry its rotation over, so both rotations end up in the remote.
    for trial in 0..20 {
        let ops = Ops::new();
        ops.sync(&["sync", HOST[0], HOST[1]]);
        let before = ops.decrypted_secrets()["stringData"].clone();
        let remote = ops.remote();
        // Each racer has a cache of its own, as two CI runners would: they meet at the remote, not at a lock.
        let spawn = |secret: &str| {
            support::cli::command()
                .args(["sync", HOST[0], HOST[1], "--rotate", secret, "--repo"])
                .arg(&remote)
                .env("SOPS_AGE_KEY_FILE", ops.key())
                .env("XDG_CACHE_HOME", ops.cache_home().join(secret))
                .output()
                .unwrap()
        };
        let (first, second) = std::thread::scope(|s| {
            let a = s.spawn(|| spawn("redis-password"));
            let b = s.spawn(|| spawn("sandbox-api-key"));
            (a.join().unwrap(), b.join().unwrap())
        });
        for out in [&first, &second] {
            assert_eq!(out.status.code(), Some(6), "trial {trial}: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert_eq!(ops.commits(), 4, "trial {trial}: both changes committed");
        let after = ops.decrypted_secrets()["stringData"].clone();
        for (name, value) in before.as_object().unwrap() {
            let rotated = name == "redis-password" || name == "sandbox-api-key";
            assert_eq!(after[name] != *value, rotated, "trial {trial}: {name}");
        }
    }
}

#[test]
fn a_path_no_published_web_image_is_built_for_is_said_at_sync() {
    let ops = Ops::with_config(|recipient, _| {
        format!("environments:\n  prod:\n    imageTag: 1.13.3\n    path: /ai\n    recipients: [{recipient}]\n")
    });
    let (code, _, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("path /ai: no published web image") && stderr.contains("NEXT_PUBLIC_BASE_PATH=/ai"),
        "{stderr}"
    );
    // At /dify the chart's own web image serves: nothing to say.
    let (code, _, stderr) = Ops::new().sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!stderr.contains("web image"), "{stderr}");
}

#[test]
fn bad_inputs_are_clear_errors_and_leave_the_ops_repo_untouched() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let untouched = |ops: &Ops| assert_eq!(ops.commits(), 2);

    let (code, _, stderr) = ops.sync(&["sync", HOST[0], HOST[1], "--config", "missing.yaml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.yaml") && stderr.contains("dify-gitops init"), "{stderr}");
    untouched(&ops);

    let (code, _, stderr) = ops.sync(&["sync", HOST[0], HOST[1], "--recipient", "age1notarecipient"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("recipient"), "{stderr}");
    untouched(&ops);

    let unreachable = support::cli::command()
        .args(["sync", HOST[0], HOST[1], "--repo", "file:///nonexistent/ops.git"])
        .env("XDG_CACHE_HOME", ops.cache_home())
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the ops repo file:///nonexistent/ops.git")
    );

    // A ciphertext changed in the repo: the MAC no longer verifies, so nothing is carried over or pushed.
    let seed = ops.dir.path().join("tamper");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), seed.to_str().unwrap()], None);
    let file = seed.join("apps/prod/dify/dify-secrets.sops.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let (start, _) = text.match_indices("redis-password: ENC[AES256_GCM,data:").next().unwrap();
    let at = start + "redis-password: ENC[AES256_GCM,data:".len();
    let flipped = if &text[at..at + 1] == "A" { "B" } else { "A" };
    std::fs::write(&file, format!("{}{flipped}{}", &text[..at], &text[at + 1..])).unwrap();
    git(&seed, &["commit", "-q", "-am", "corrupt"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    let (code, _, stderr) = ops.sync(&["sync", "--host", "192.0.2.30"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot decrypt the existing dify-secrets.sops.yaml"), "{stderr}");
    assert_eq!(ops.commits(), 3, "only the corrupting commit");
}

#[test]
fn no_secret_plaintext_in_history_stdout_or_stderr() {
    let ops = Ops::new();
    let mut printed = String::new();
    let mut secrets = Vec::new();
    for args in [
        vec!["sync", "--host", "192.0.2.10"],
        vec!["sync", "--host", "192.0.2.11", "--rotate", "postgres-password", "-v"],
        vec!["diff", "--host", "192.0.2.12", "--rotate", "redis-password", "--output", "json"],
        vec!["sync", "--host", "192.0.2.12", "--rotate", "redis-password", "-vv"],
    ] {
        let (_, stdout, stderr) = ops.sync(&args);
        printed.push_str(&stdout);
        printed.push_str(&stderr);
        let data = ops.decrypted_secrets()["stringData"].clone();
        secrets.extend(data.as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()));
    }
    let history = git(&ops.remote(), &["log", "-p", "--all", "--format=%B"]);
    assert!(secrets.len() >= 4 * 11);
    for secret in &secrets {
        assert!(!history.contains(secret.as_str()), "a secret value is in the ops repo history");
        assert!(!printed.contains(secret.as_str()), "a secret value was printed");
    }
}

#[tokio::test]
async fn an_address_changed_on_the_cluster_becomes_one_commit() {
    let testbed = Testbed::shared();
    let client = testbed.client().await;
    let service = unique_namespace("traefik-sync");
    let namespace = support::load_balancer(&client, "ws", &service).await;
    set_load_balancer_ip(&client, &namespace, &service, "198.51.100.5").await;
    let ops = Ops::with_config(|r, _| {
        format!(
            "environments:\n  prod:\n    imageTag: 1.13.3\n    traefik: {{service: {service}}}\n    recipients: [{r}]\n"
        )
    });
    let kubeconfig = testbed.kubeconfig.to_str().unwrap().to_string();
    let sync = || ops.sync(&["sync", "--kubeconfig", &kubeconfig]);
    assert_eq!(sync().0, 6);
    assert_eq!(sync().0, 0);
    set_load_balancer_ip(&client, &namespace, &service, "198.51.100.6").await;
    let (code, stdout, stderr) = sync();
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(ops.commits(), 3);
    assert!(ops.head_message().starts_with("dify/prod: external.host 198.51.100.5 -> 198.51.100.6\n"));
}

#[test]
fn show_secret_prints_one_named_secret_only_with_the_identity() {
    let ops = Ops::new();
    ops.sync(&["sync", HOST[0], HOST[1]]);
    let checkout = ops.dir.path().join("checkout");
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), checkout.to_str().unwrap()], None);
    let show = |identity: Option<&Path>, name: &str| {
        let mut command = support::cli::command();
        command.args(["show-secret", name, "--repo-dir"]).arg(&checkout);
        if let Some(identity) = identity {
            command.arg("--identity").arg(identity);
        }
        command.output().unwrap()
    };
    let out = show(Some(&ops.key()), "init-password");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = ops.decrypted_secrets()["stringData"]["init-password"].as_str().unwrap().to_string();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{expected}\n"));

    let without = show(None, "init-password");
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("needs the operator's age identity"));
    assert!(without.stdout.is_empty());
    let unknown = show(Some(&ops.key()), "root-password");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("have: dify-secret-key"));
}
