//! sync owns only what it generates: keys an operator added to the Secret (with `sops set`, `sops edit` or
//! `dify-gitops secret set`), labels and annotations a person added, survive every sync, with or without the
//! operator's identity. Real `sops`, `age` and `git` throughout; `sops -d` verifies the MAC of every result.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::ops::{OpsRemote as Ops, git, run};

const SECRETS: &str = "apps/prod/dify/dify-secrets.sops.yaml";
const VALUES: &str = "apps/prod/dify/dify-values.yaml";
const OPENAI: &str = "sk-test-kept-4f1d9c0b7e";

/// A working copy of the remote, as an operator clones it.
fn checkout(ops: &Ops, name: &str) -> PathBuf {
    let work = ops.dir.path().join(name);
    run("git", &["clone", "-q", ops.remote().to_str().unwrap(), work.to_str().unwrap()], None);
    work
}

/// The real `sops` in `work`, with `key` as the identity; panics with its stderr when it fails.
fn sops(work: &Path, key: &Path, args: &[&str], editor: Option<&Path>) {
    let mut command = Command::new("sops");
    command.args(args).current_dir(work).env("SOPS_AGE_KEY_FILE", key);
    if let Some(editor) = editor {
        command.env("EDITOR", editor).env("SOPS_EDITOR", editor);
    }
    let out = command.output().expect("sops on PATH (scripts/test-tools install)");
    assert!(out.status.success(), "sops {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn commit_and_push(work: &Path, message: &str) {
    git(work, &["commit", "-q", "-am", message]);
    git(work, &["push", "-q", "origin", "HEAD:main"]);
}

/// `sops set` of a key under stringData, committed and pushed, as the operator did.
fn sops_set(ops: &Ops, name: &str, value: &str) {
    let work = checkout(ops, &format!("set-{name}"));
    sops(&work, &ops.key(), &["set", SECRETS, &format!("[\"stringData\"][\"{name}\"]"), &format!("\"{value}\"")], None);
    commit_and_push(&work, &format!("add {name}"));
}

/// The recipients of the remote's Secret, in file order.
fn file_recipients(ops: &Ops) -> Vec<String> {
    ops.show(SECRETS).lines().filter_map(|l| l.trim().strip_prefix("recipient: ").map(str::to_string)).collect()
}

fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    run("age-keygen", &["-o", key.to_str().unwrap()], None);
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
    let recipient = run("age-keygen", &["-y", key.to_str().unwrap()], None).trim().to_string();
    (key, recipient)
}

#[test]
fn a_key_added_with_sops_set_survives_syncs_that_change_the_address() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.10"]).0, 6);
    sops_set(&ops, "openai-api-key", OPENAI);
    let secrets_before = ops.show(SECRETS);

    // MetalLB moves Traefik three times; the scheduled reconcile runs with the operator's identity.
    let mut previous = "192.0.2.10";
    for host in ["192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        let (code, stdout, stderr) = ops.sync(&["sync", "--host", host]);
        assert_eq!(code, 6, "{stdout}{stderr}");
        assert!(stdout.contains(&format!("external.host {previous} -> {host}")), "{stdout}");
        assert!(!stdout.contains("rewritten"), "an address change does not touch the Secret: {stdout}");
        assert!(!format!("{stdout}{stderr}").contains(OPENAI), "the value was printed");
        // `sops -d` verifies the MAC.
        assert_eq!(ops.decrypted_secrets()["stringData"]["openai-api-key"], OPENAI, "after the sync to {host}");
        assert_eq!(ops.show(SECRETS), secrets_before, "the Secret is left byte for byte");
        previous = host;
    }
    assert_eq!(ops.commits(), 6, "config, overlay, the key, three address changes");

    // A sync that has to re-encrypt (a rotation) carries the key through and names it, never its value.
    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.13", "--rotate", "redis-password"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains("kept 1 key sync does not generate: openai-api-key"), "{stdout}");
    assert!(ops.head_message().contains("kept 1 key sync does not generate: openai-api-key"));
    assert!(!format!("{stdout}{stderr}{}", ops.head_message()).contains(OPENAI));
    let data = ops.decrypted_secrets()["stringData"].clone();
    assert_eq!(data["openai-api-key"], OPENAI);
    assert_eq!(data.as_object().unwrap().len(), dify_gitops::overlay::SECRET_NAMES.len() + 1);
    // And nothing drifts afterwards.
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.13"]).0, 0);
}

#[test]
fn a_key_label_and_annotation_added_with_sops_edit_survive_re_encryption() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.10"]).0, 6);
    // sops edit hands the decrypted YAML (indent 4, stringData last) to $EDITOR.
    let editor = ops.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nset -e\n\
         sed -i 's/^metadata:$/metadata:\\n    annotations:\\n        example.com\\/owner: platform-team/' \"$1\"\n\
         sed -i 's/^    labels:$/    labels:\\n        team: platform/' \"$1\"\n\
         printf '    smtp-password: smtp-by-hand-77c1\\n' >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, PermissionsExt::from_mode(0o700)).unwrap();
    let work = checkout(&ops, "edit");
    sops(&work, &ops.key(), &["edit", SECRETS], Some(&editor));
    commit_and_push(&work, "smtp password, owner");
    let edited = ops.decrypted_secrets();
    assert_eq!(edited["stringData"]["smtp-password"], "smtp-by-hand-77c1", "the editor script worked");

    for args in
        [vec!["sync", "--host", "192.0.2.11"], vec!["sync", "--host", "192.0.2.12", "--rotate", "sandbox-api-key"]]
    {
        let (code, stdout, stderr) = ops.sync(&args);
        assert_eq!(code, 6, "{args:?}: {stdout}{stderr}");
        let secret = ops.decrypted_secrets();
        assert_eq!(secret["stringData"]["smtp-password"], "smtp-by-hand-77c1", "{args:?}");
        assert_eq!(secret["metadata"]["annotations"]["example.com/owner"], "platform-team", "{args:?}");
        assert_eq!(secret["metadata"]["labels"]["team"], "platform", "{args:?}");
        assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "dify-gitops", "{args:?}");
        assert!(!format!("{stdout}{stderr}").contains("smtp-by-hand"), "a value was printed");
    }
    let (_, stdout, _) = ops.sync(&["diff", "--host", "192.0.2.12", "--rotate", "redis-password"]);
    assert!(stdout.contains("kept 1 key sync does not generate: smtp-password"), "{stdout}");
}

#[test]
fn without_an_identity_nothing_is_lost_in_any_combination() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.10"]).0, 6);
    sops_set(&ops, "openai-api-key", OPENAI);
    let secrets = ops.show(SECRETS);

    // Non-secret values change: the Secret is not touched at all.
    let (code, stdout, stderr) = ops.cli(&["sync", "--host", "192.0.2.11"], None);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert_eq!(ops.show(SECRETS), secrets);
    assert!(ops.show(VALUES).contains("192.0.2.11"));

    // The config's recipients change: without an identity the Secret cannot be re-encrypted; it is kept, and the
    // warning names who would gain and lose access.
    let (_, other) = age_keygen(ops.dir.path(), "other.key");
    let (code, stdout, stderr) =
        ops.cli(&["sync", "--host", "192.0.2.12", "--recipient", &ops.recipient, "--recipient", &other], None);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("recipient {other} added")), "{stderr}");
    assert_eq!(ops.show(SECRETS), secrets);

    // A generated secret is missing: adding it means re-encrypting, which would drop the hand-added key without
    // the identity. sync refuses, names the key and the fix, and pushes nothing.
    let work = checkout(&ops, "unset");
    sops(&work, &ops.key(), &["unset", SECRETS, "[\"stringData\"][\"weaviate-api-key\"]"], None);
    commit_and_push(&work, "lose a generated secret");
    let commits = ops.commits();
    let (code, stdout, stderr) = ops.cli(&["sync", "--host", "192.0.2.13"], None);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("weaviate-api-key") && stderr.contains("openai-api-key"), "{stderr}");
    assert!(stderr.contains("SOPS_AGE_KEY_FILE"), "{stderr}");
    assert!(!stderr.contains(OPENAI));
    assert_eq!(ops.commits(), commits, "nothing was pushed");

    // With the identity: the missing one is generated, the hand-added one kept.
    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.13"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains("secret weaviate-api-key generated"), "{stdout}");
    assert!(stdout.contains("kept 1 key sync does not generate: openai-api-key"), "{stdout}");
    assert_eq!(ops.decrypted_secrets()["stringData"]["openai-api-key"], OPENAI);
}

#[test]
fn recipients_added_and_removed_are_named_in_the_change_list() {
    let ops = Ops::new();
    assert_eq!(ops.sync(&["sync", "--host", "192.0.2.10"]).0, 6);
    sops_set(&ops, "openai-api-key", OPENAI);

    // Someone gave another key access by hand (what `sops updatekeys` does with a broader .sops.yaml).
    let (intruder_key, intruder) = age_keygen(ops.dir.path(), "intruder.key");
    let work = checkout(&ops, "updatekeys");
    sops(&work, &ops.key(), &["rotate", "-i", "--add-age", &intruder, SECRETS], None);
    commit_and_push(&work, "updatekeys");
    assert_eq!(file_recipients(&ops), [ops.recipient.clone(), intruder.clone()]);

    // sync re-encrypts for the config's list and says who lost access.
    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.10"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("recipient {intruder} removed")), "{stdout}");
    assert!(ops.head_message().contains(&format!("recipient {intruder} removed")), "{}", ops.head_message());
    assert_eq!(file_recipients(&ops), std::slice::from_ref(&ops.recipient));
    assert_eq!(ops.decrypted_secrets()["stringData"]["openai-api-key"], OPENAI, "carried through re-encryption");
    let file = ops.dir.path().join("check.sops.yaml");
    std::fs::write(&file, ops.show(SECRETS)).unwrap();
    let out = Command::new("sops").arg("-d").arg(&file).env("SOPS_AGE_KEY_FILE", &intruder_key).output().unwrap();
    assert!(!out.status.success(), "the removed recipient can no longer decrypt");

    // The config gains a recipient, then loses the operator's: both show, by recipient.
    let (new_key, newcomer) = age_keygen(ops.dir.path(), "newcomer.key");
    let work = checkout(&ops, "config");
    let config =
        |recipients: &str| format!("environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{recipients}]\n");
    std::fs::write(work.join("dify-gitops.yaml"), config(&format!("{}, {newcomer}", ops.recipient))).unwrap();
    commit_and_push(&work, "add a recipient");
    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.10"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("recipient {newcomer} added")), "{stdout}");
    git(&work, &["pull", "-q", "origin", "main"]);
    std::fs::write(work.join("dify-gitops.yaml"), config(&newcomer)).unwrap();
    commit_and_push(&work, "remove the operator");
    let (code, stdout, stderr) = ops.sync(&["sync", "--host", "192.0.2.10"]);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("recipient {} removed", ops.recipient)), "{stdout}");
    assert_eq!(file_recipients(&ops), [newcomer]);
    std::fs::write(&file, ops.show(SECRETS)).unwrap();
    let out = Command::new("sops").arg("-d").arg(&file).env("SOPS_AGE_KEY_FILE", &new_key).output().unwrap();
    assert!(out.status.success(), "the new recipient decrypts: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(OPENAI), "and the hand-added key is there");
}
