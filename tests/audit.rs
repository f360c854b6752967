//! `dify-gitops audit` on real ops repos built at test time with the real `git`, `sops`, `age-keygen` and `openssl`:
//! an overlay written by `dify-gitops sync` is clean; each planted problem is found with its file, line or commit,
//! and key — and no planted value is ever printed.

use std::path::{Path, PathBuf};

mod support;

use support::ops::{OpsRemote, git, run};

/// A bare ops remote with a `dify-gitops sync` overlay, the operator's age key, and a working copy of it.
struct Ops {
    remote: OpsRemote,
    dir: PathBuf,
}

impl Ops {
    fn synced() -> Self {
        let remote = OpsRemote::new();
        let (code, _, stderr) = remote.sync(&["sync", "--host", "192.0.2.10"]);
        assert_eq!(code, 6, "sync: {stderr}");
        let ops = Self { dir: remote.dir.path().to_path_buf(), remote };
        run("git", &["clone", "-q", ops.remote().to_str().unwrap(), ops.work().to_str().unwrap()], None);
        ops
    }

    fn remote(&self) -> PathBuf {
        self.remote.remote()
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn key(&self) -> PathBuf {
        self.remote.key()
    }

    fn write(&self, path: &str, text: &str) {
        let file = self.work().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    fn commit(&self, message: &str) {
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "-m", message]);
    }
}

/// (rule, path, key, line, commit) of a finding.
type Found = (String, String, String, Option<u64>, Option<String>);

struct Audit {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Audit {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }

    /// (rule, path, key, line, commit) of each finding.
    fn findings(&self) -> Vec<Found> {
        let report = self.json();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_string(),
                    f["path"].as_str().unwrap().to_string(),
                    f["key"].as_str().unwrap_or("").to_string(),
                    f["line"].as_u64(),
                    f["commit"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

fn audit(dir: &Path, args: &[&str]) -> Audit {
    let (code, stdout, stderr) =
        support::cli::run(support::cli::command().arg("audit").arg("--repo-dir").arg(dir).args(args)).parts();
    Audit { code, stdout, stderr }
}

/// A random lowercase hex string: planted values are made at run time, never written in this file.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn an_ops_repo_written_by_sync_is_clean_in_tree_history_and_with_the_identity() {
    let ops = Ops::synced();
    for (dir, extra) in [
        (ops.work(), vec![]),
        (ops.work(), vec!["--history"]),
        (ops.work(), vec!["--history", "--identity", ops.key().to_str().unwrap()]),
        (ops.remote(), vec!["--history", "--identity", ops.key().to_str().unwrap()]),
    ] {
        let mut args = extra.clone();
        args.extend(["--output", "json"]);
        let result = audit(&dir, &args);
        assert_eq!(result.code, 0, "{extra:?}: {}{}", result.stdout, result.stderr);
        let report = result.json();
        assert_eq!(report["clean"], true);
        assert_eq!(report["findings"], serde_json::json!([]), "{extra:?}");
        assert!(report["files"].as_u64().unwrap() >= 3, "config, values and secrets: {report}");
    }
    let text = audit(&ops.work(), &["--history"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.starts_with("audit: 0 problem(s), 0 warning(s)"), "{}", text.stdout);
}

#[test]
fn every_planted_problem_is_found_with_its_file_line_and_key_and_no_value_is_printed() {
    let ops = Ops::synced();
    let password = format!("pw-{}", random_hex(8));
    let admin_password = format!("admin-{}", random_hex(8));
    let api_key = format!("sk-proj-{}", random_hex(24));
    let deleted_token = random_hex(20);

    // A plain Secret as the second document of a multi-document file.
    ops.write(
        "apps/prod/extra/db.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: db-config, namespace: dify}}\ndata:\n  host: db\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: dify}}\ntype: Opaque\nstringData:\n  \
             username: dify\n  password: {password}\n"
        ),
    );
    // A password in a ConfigMap, next to references that are fine.
    ops.write(
        "apps/prod/extra/settings.yml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata:\n  LOG_LEVEL: info\n  \
             ADMIN_PASSWORD: {admin_password}\n  REDIS_PASSWORD: ${{REDIS_PASSWORD}}\n  existingSecret: dify-secrets\n"
        ),
    );
    // An OpenAI key in a values file.
    ops.write(
        "values/prod-values.yaml",
        &format!("image:\n  tag: 1.13.3\nmodels:\n  openai:\n    apiKey: {api_key}\n"),
    );
    // The operator's age identity, copied into the repo by mistake.
    std::fs::copy(ops.key(), ops.work().join("keys.txt")).unwrap();
    let identity = std::fs::read_to_string(ops.key()).unwrap();
    let identity = identity.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap().to_string();
    // A TLS private key.
    let pem = ops.work().join("certs/tls.key");
    std::fs::create_dir_all(pem.parent().unwrap()).unwrap();
    run("openssl", &["genpkey", "-algorithm", "ed25519", "-out", pem.to_str().unwrap()], None);
    let pem_text = std::fs::read_to_string(&pem).unwrap();
    // A ciphertext of the overlay's Secret altered after encryption.
    let secrets = ops.work().join("apps/prod/dify/dify-secrets.sops.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let marker = "redis-password: ENC[AES256_GCM,data:";
    let at = text.find(marker).unwrap() + marker.len();
    let flipped = if &text[at..at + 1] == "A" { "B" } else { "A" };
    std::fs::write(&secrets, format!("{}{flipped}{}", &text[..at], &text[at + 1..])).unwrap();
    // A Secret committed, then deleted: only the history still has it.
    ops.write(
        "apps/prod/old/api-token.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: api-token}}\ndata:\n  token: {deleted_token}\n"),
    );
    ops.commit("plant problems");
    let leaked_in = git(&ops.work(), &["rev-parse", "HEAD"]).trim().to_string();
    git(&ops.work(), &["rm", "-q", "apps/prod/old/api-token.yaml"]);
    ops.commit("remove the token");

    let tree = audit(&ops.work(), &["--output", "json"]);
    assert_eq!(tree.code, 7, "exit 7 = problems: {}", tree.stderr);
    let found = tree.findings();
    let has = |rule: &str, path: &str, key: &str, line: u64| {
        found.iter().any(|(r, p, k, l, c)| r == rule && p == path && k == key && *l == Some(line) && c.is_none())
    };
    assert!(has("plaintext-secret", "apps/prod/extra/db.yaml", "stringData.password", 13), "{found:#?}");
    assert!(has("plaintext-secret", "apps/prod/extra/db.yaml", "stringData.username", 12), "{found:#?}");
    assert!(has("secret-in-config", "apps/prod/extra/settings.yml", "data.ADMIN_PASSWORD", 6), "{found:#?}");
    assert!(has("api-key", "values/prod-values.yaml", "apiKey", 5), "{found:#?}");
    assert!(found.iter().any(|(r, p, ..)| r == "age-identity" && p == "keys.txt"), "{found:#?}");
    assert!(has("private-key", "certs/tls.key", "", 1), "{found:#?}");
    assert!(
        !found.iter().any(|(r, ..)| r == "sops-mac"),
        "without an identity the MAC cannot be checked, and is not claimed to be"
    );
    assert!(!found.iter().any(|(_, p, ..)| p.contains("api-token")), "deleted: not in the working tree");
    assert_eq!(found.len(), 6, "nothing else (references, the clean overlay, the config): {found:#?}");

    let with_identity = audit(&ops.work(), &["--identity", ops.key().to_str().unwrap(), "--output", "json"]);
    assert_eq!(with_identity.code, 7);
    let mac: Vec<_> = with_identity.findings().into_iter().filter(|f| f.0 == "sops-mac").collect();
    assert_eq!(mac.len(), 1, "{mac:?}");
    assert_eq!((mac[0].1.as_str(), mac[0].2.as_str()), ("apps/prod/dify/dify-secrets.sops.yaml", "sops.mac"));

    let history = audit(&ops.work(), &["--history", "--output", "json"]);
    assert_eq!(history.code, 7);
    let deleted: Vec<_> = history.findings().into_iter().filter(|f| f.1 == "apps/prod/old/api-token.yaml").collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].0, "plaintext-secret");
    assert_eq!(deleted[0].2, "data.token");
    assert_eq!(deleted[0].4.as_deref(), Some(leaked_in.as_str()), "names the commit that added it");
    assert_eq!(history.json()["commits"], 4, "config, overlay, plant, remove");

    // For people: file:line, key and fix; history as commit:path.
    let text = audit(&ops.work(), &["--history"]);
    assert_eq!(text.code, 7);
    assert!(text.stdout.contains("ERROR  apps/prod/extra/db.yaml:13  key stringData.password"), "{}", text.stdout);
    assert!(text.stdout.contains(&format!("ERROR  {}:apps/prod/old/api-token.yaml", &leaked_in[..12])));
    assert!(text.stdout.contains("fix: encrypt it: sops -e"), "{}", text.stdout);
    assert!(text.stderr.contains("audit found 7 problem(s)"), "{}", text.stderr);

    for output in [&tree, &with_identity, &history, &text] {
        let printed = format!("{}{}", output.stdout, output.stderr);
        for planted in [&password, &admin_password, &api_key, &deleted_token, &identity] {
            assert!(!printed.contains(planted.as_str()), "a planted value was printed");
        }
        assert!(!printed.contains(&identity["AGE-SECRET-KEY-1".len()..]), "part of the identity was printed");
        let pem_body = pem_text.lines().nth(1).unwrap();
        assert!(!printed.contains(pem_body), "the private key was printed");
    }
}

#[test]
fn a_value_added_to_a_sops_file_after_encryption_is_found_without_an_identity() {
    let ops = Ops::synced();
    let secrets = ops.work().join("apps/prod/dify/dify-secrets.sops.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let extra = random_hex(12);
    let text = text.replacen("stringData:\n", &format!("stringData:\n    added-later: {extra}\n"), 1);
    std::fs::write(&secrets, text).unwrap();
    let result = audit(&ops.work(), &["--output", "json"]);
    assert_eq!(result.code, 7);
    assert_eq!(
        result.findings(),
        vec![(
            "unencrypted-sops-value".to_string(),
            "apps/prod/dify/dify-secrets.sops.yaml".to_string(),
            "stringData.added-later".to_string(),
            result.findings()[0].3,
            None
        )]
    );
    assert!(!result.stdout.contains(&extra));
}

#[test]
fn a_sops_file_for_another_key_is_a_warning_and_git_ignored_files_are_skipped() {
    let ops = Ops::synced();
    let other = ops.dir.join("other.key");
    run("age-keygen", &["-o", other.to_str().unwrap()], None);
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // The operator keeps the key in the working copy, ignored by git: it is never committed, so not a finding.
    std::fs::copy(&other, ops.work().join("local.agekey")).unwrap();
    ops.write(".gitignore", "*.agekey\n");
    let result = audit(&ops.work(), &["--identity", other.to_str().unwrap(), "--output", "json"]);
    assert_eq!(result.code, 0, "a warning does not fail the audit: {}", result.stdout);
    let findings = result.findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].0, "sops-unverified");
    assert_eq!(result.json()["findings"][0]["severity"], "warning");
}

#[test]
fn help_documents_the_exit_code_and_examples() {
    let out = support::cli::command().args(["audit", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("dify-gitops audit --repo-dir ~/ops --history"), "{help}");
    assert!(help.contains("7 problems found"), "{help}");
    let out = support::cli::command().arg("--help").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("7  audit:"));
}
