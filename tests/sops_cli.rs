//! `dify_gitops::sops` against the real tools: `sops` (3.13.2, the pin in scripts/test-tools),
//! `age` and `age-keygen`. Every test generates its own age key in its own temporary directory;
//! no key is ever committed. A missing tool fails the test with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dify_gitops::sops::{self, Recipients};
use serde_json::{Value, json};
use tempfile::TempDir;

const SECRET: &str = "pl41ntext-Secret-Key-9d2e";

/// Finds a tool on PATH, then in the directory `scripts/test-tools path` prints.
fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-tools");
    if let Ok(out) = Command::new(&script).arg("path").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH nor in the test-tools directory: run `scripts/test-tools install sops debian` \
             and `export PATH=$(scripts/test-tools path):$PATH`"
        )
    })
}

struct Env {
    dir: TempDir,
    key_file: PathBuf,
    identity: age::x25519::Identity,
    recipient: String,
}

impl Env {
    /// A temporary directory with a fresh age key made by `age-keygen`.
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let key_file = dir.path().join("key.txt");
        let out = run(Command::new(tool("age-keygen")).arg("-o").arg(&key_file));
        assert!(out.status.success(), "age-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&key_file).expect("read key file");
        let mut identities = sops::parse_identities(&text).expect("we read the key file age-keygen wrote");
        assert_eq!(identities.len(), 1);
        let identity = identities.remove(0);
        let out = run(Command::new(tool("age-keygen")).arg("-y").arg(&key_file));
        assert!(out.status.success(), "age-keygen -y failed");
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(recipient, identity.to_public().to_string());
        Self { dir, key_file, identity, recipient }
    }

    fn recipients(&self) -> Recipients {
        Recipients::parse([&self.recipient]).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// `sops` isolated from the user's keys and config: only this test's key file.
    fn sops(&self) -> Command {
        let mut cmd = Command::new(tool("sops"));
        cmd.current_dir(self.dir.path())
            .env("SOPS_AGE_KEY_FILE", &self.key_file)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("HOME", self.dir.path())
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("SOPS_AGE_RECIPIENTS");
        cmd
    }

    fn sops_decrypt_json(&self, file: &Path) -> Output {
        run(self.sops().args(["--decrypt", "--input-type", "yaml", "--output-type", "json"]).arg(file))
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dify-secrets",
            "namespace": "dify",
            "labels": {"app.kubernetes.io/name": "dify", "app.kubernetes.io/managed-by": "dify-gitops"},
            "annotations": {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent", "example.com/flag": "true", "n": "12"}
        },
        "type": "Opaque",
        "immutable": false,
        "stringData": {
            "SECRET_KEY": SECRET,
            "EMPTY": "",
            "PEM": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "QUOTED": "it's \"quoted\": yes # not a comment",
            "YES": "yes",
            "NUMBERISH": "0x1F"
        },
        "data": {"REDIS_PASSWORD": "cmVkaXMtcGFzcw=="}
    })
}

fn parse_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sops printed no JSON ({e}): {}", stderr(out)))
}

#[test]
fn sops_decrypts_and_verifies_what_we_encrypt() {
    let env = Env::new();
    let text = sops::encrypt(&secret(), &env.recipients(), SystemTime::now()).unwrap();
    assert!(!text.contains(SECRET));
    let file = env.write("secret.sops.yaml", &text);
    let out = env.sops_decrypt_json(&file);
    assert!(out.status.success(), "sops -d refused our file: {}\n{text}", stderr(&out));
    assert_eq!(parse_json(&out), secret(), "sops -d output differs from the input (key order included)");
}

#[test]
fn the_age_cli_unwraps_our_data_key() {
    let env = Env::new();
    let text = sops::encrypt(&secret(), &env.recipients(), SystemTime::now()).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).expect("our output is YAML");
    let armored = doc["sops"]["age"][0]["enc"].as_str().expect("sops.age[0].enc");
    assert_eq!(doc["sops"]["age"][0]["recipient"], env.recipient.as_str());
    let enc = env.write("datakey.age", armored);
    let out = run(Command::new(tool("age")).arg("--decrypt").arg("-i").arg(&env.key_file).arg(&enc));
    assert!(out.status.success(), "age -d failed: {}", stderr(&out));
    assert_eq!(out.stdout.len(), 32, "the data key is 32 bytes");

    // It is the key the values are encrypted with: open SECRET_KEY by hand (AAD = path + ':').
    let value = doc["stringData"]["SECRET_KEY"].as_str().unwrap();
    let field = |name: &str| {
        let start = value.find(&format!("{name}:")).unwrap() + name.len() + 1;
        let end = value[start..].find([',', ']']).unwrap() + start;
        B64.decode(&value[start..end]).unwrap()
    };
    let (mut sealed, iv) = (field("data"), field("iv"));
    sealed.extend(field("tag"));
    assert_eq!(iv.len(), 32, "sops IVs are 32 bytes");
    let cipher = AesGcm::<Aes256, U32>::new_from_slice(&out.stdout).unwrap();
    let plain = cipher
        .decrypt(Nonce::<U32>::from_slice(&iv), Payload { msg: &sealed, aad: b"stringData:SECRET_KEY:" })
        .expect("the age-unwrapped key opens the value");
    assert_eq!(plain, SECRET.as_bytes());
}

const PLAIN_SECRET_YAML: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: dify-secrets
  namespace: dify
  labels:
    app.kubernetes.io/name: dify
  annotations:
    example.com/flag: "true"
type: Opaque
immutable: false
stringData:
  SECRET_KEY: pl41ntext-Secret-Key-9d2e
  EMPTY: ""
  PEM: |
    -----BEGIN KEY-----
    abc
    -----END KEY-----
  LIST:
    - one
    - two
data:
  REDIS_PASSWORD: cmVkaXMtcGFzcw==
"#;

fn sops_encrypt(env: &Env, plain: &str) -> String {
    let file = env.write("plain.yaml", plain);
    let out = run(env
        .sops()
        .args(["--encrypt", "--encrypted-regex", "^(data|stringData)$", "--age", &env.recipient])
        .arg(&file));
    assert!(out.status.success(), "sops -e failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn plain_secret_json() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "dify-secrets",
            "namespace": "dify",
            "labels": {"app.kubernetes.io/name": "dify"},
            "annotations": {"example.com/flag": "true"}
        },
        "type": "Opaque",
        "immutable": false,
        "stringData": {
            "SECRET_KEY": SECRET,
            "EMPTY": "",
            "PEM": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "LIST": ["one", "two"]
        },
        "data": {"REDIS_PASSWORD": "cmVkaXMtcGFzcw=="}
    })
}

#[test]
fn we_decrypt_what_sops_encrypts() {
    let env = Env::new();
    let text = sops_encrypt(&env, PLAIN_SECRET_YAML);
    assert!(!text.contains(SECRET));
    let got = sops::decrypt(&text, std::slice::from_ref(&env.identity)).expect("we read a file sops wrote");
    assert_eq!(got.manifest, plain_secret_json());
    assert_eq!(got.recipients, std::slice::from_ref(&env.recipient));

    // Carried over and re-encrypted unchanged by us, sops still reads it.
    let again = got.reencrypt(&got.manifest, &env.recipients(), SystemTime::now()).unwrap();
    let file = env.write("again.yaml", &again);
    let out = env.sops_decrypt_json(&file);
    assert!(out.status.success(), "sops -d refused our re-encryption: {}", stderr(&out));
    assert_eq!(parse_json(&out), plain_secret_json());
}

#[test]
fn we_decrypt_every_rule_sops_writes() {
    let env = Env::new();
    // Comments are kept (and, in encrypted parts, encrypted) by sops but are outside the MAC.
    let commented = PLAIN_SECRET_YAML
        .replace("stringData:\n", "stringData:\n  # generated once, carried over\n")
        .replace("kind: Secret\n", "kind: Secret # a readable comment\n");
    let cases: [(&str, &[&str]); 5] = [
        ("encrypted_regex", &["--encrypted-regex", "^(data|stringData)$"]),
        ("mac_only_encrypted", &["--mac-only-encrypted", "--encrypted-regex", "^(data|stringData)$"]),
        ("default rule: everything encrypted", &[]),
        ("unencrypted_regex", &["--unencrypted-regex", "^(apiVersion|kind|metadata|type|immutable)$"]),
        ("encrypted_suffix", &["--encrypted-suffix", "Data"]),
    ];
    for (case, flags) in cases {
        let file = env.write("plain.yaml", &commented);
        let out = run(env.sops().args(flags).args(["--encrypt", "--age", &env.recipient]).arg(&file));
        assert!(out.status.success(), "{case}: sops -e failed: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains(SECRET), "{case}: plaintext in sops' output");
        let got = sops::decrypt(&text, std::slice::from_ref(&env.identity))
            .unwrap_or_else(|e| panic!("{case}: we refused sops' file: {e:#}\n{text}"));
        assert_eq!(got.manifest, plain_secret_json(), "{case}");
    }
}

#[test]
fn our_layout_is_the_layout_sops_writes() {
    let env = Env::new();
    let from_sops = sops_encrypt(&env, PLAIN_SECRET_YAML);
    let manifest = sops::decrypt(&from_sops, std::slice::from_ref(&env.identity)).unwrap().manifest;
    let ours = sops::encrypt(&manifest, &env.recipients(), SystemTime::now()).unwrap();
    let normalize = |text: &str| {
        let enc = regex::Regex::new(r"ENC\[AES256_GCM,data:[^\]]*\]").unwrap();
        let armor =
            regex::Regex::new(r"(?s)-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----").unwrap();
        let modified = regex::Regex::new(r#"lastmodified: "[^"]*""#).unwrap();
        let text = enc.replace_all(text, "ENC[…]");
        let text = armor.replace_all(&text, "ARMOR");
        modified.replace_all(&text, "lastmodified: T").into_owned()
    };
    assert_eq!(normalize(&ours), normalize(&from_sops), "ours:\n{ours}\nsops:\n{from_sops}");
}

#[test]
fn sops_can_edit_our_file_and_we_read_its_edit() {
    let env = Env::new();
    let text = sops::encrypt(&secret(), &env.recipients(), SystemTime::now()).unwrap();
    let file = env.write("secret.sops.yaml", &text);
    let out = run(env.sops().arg("set").arg(&file).arg(r#"["stringData"]["ADDED"]"#).arg(r#""by-sops""#));
    assert!(out.status.success(), "sops set failed on our file: {}", stderr(&out));
    let edited = std::fs::read_to_string(&file).unwrap();
    let got = sops::decrypt(&edited, &[env.identity]).expect("we read sops' edit of our file");
    let mut want = secret();
    want["stringData"]["ADDED"] = json!("by-sops");
    assert_eq!(got.manifest, want);
}

#[test]
fn a_file_edited_after_encryption_is_refused_by_us_and_by_sops() {
    let env = Env::new();
    let text = sops::encrypt(&secret(), &env.recipients(), SystemTime::now()).unwrap();
    let line = |key: &str| text.lines().find(|l| l.trim_start().starts_with(key)).unwrap().to_owned();

    // A readable value changed.
    let renamed = text.replacen("name: dify-secrets", "name: evil", 1);
    // An encrypted value replaced by another key's ciphertext (valid ENC, wrong place).
    let pem_ct = line("PEM:").trim().strip_prefix("PEM: ").unwrap().to_owned();
    let moved = text.replacen(&line("SECRET_KEY:"), &format!("    SECRET_KEY: {pem_ct}"), 1);
    // An encrypted value replaced by plaintext.
    let plain = text.replacen(&line("SECRET_KEY:"), "    SECRET_KEY: changed-by-hand", 1);

    for (case, edited, sops_says) in [
        ("readable value changed", renamed, "MAC mismatch"),
        ("ciphertext moved", moved, "Could not decrypt"),
        ("plaintext pasted", plain, "Could not decrypt"),
    ] {
        let ours = sops::decrypt(&edited, std::slice::from_ref(&env.identity));
        let err = format!("{:#}", ours.expect_err(case));
        assert!(!err.contains(SECRET) && !err.contains("changed-by-hand"), "{case}: error leaks a value: {err}");
        let file = env.write("edited.yaml", &edited);
        let out = env.sops_decrypt_json(&file);
        assert!(!out.status.success(), "{case}: sops -d accepted an edited file");
        assert!(stderr(&out).contains(sops_says), "{case}: sops said: {}", stderr(&out));
    }
}

/// Strings that YAML quotes, escapes or resolves to other types, in readable and encrypted places.
fn awkward() -> Value {
    let strings = [
        "",
        " ",
        "a ",
        " a",
        "\n",
        "a\n",
        "\nlead",
        "x\n  y\n",
        "tab\there",
        "quote\"s",
        "back\\slash",
        "uni ☃ 😀",
        "\u{FEFF}bom",
        "cr\rlf",
        "# hash",
        "key: value",
        "[1, 2]",
        "{a: b}",
        "&anchor",
        "*alias",
        "!tag",
        "@at",
        "%pct",
        "| pipe",
        "> fold",
        "true",
        "False",
        "NULL",
        "~",
        "0x1F",
        "010",
        "1e5",
        ".inf",
        "-.5",
        "+1",
        "1_000",
        "12:30:00",
        "2024-01-01",
        "2024-01-01T10:00:00Z",
        "yes",
        "Off",
        "n",
        "...",
        "---",
        "- dash",
        "ends\n\n\n",
        "trailing \nspace",
    ];
    let map = |prefix: &str| -> serde_json::Map<String, Value> {
        strings.iter().enumerate().map(|(i, s)| (format!("{prefix}{i}"), json!(s))).collect()
    };
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "awkward", "annotations": map("a"), "generation": 3, "ratio": 1.5, "off": false, "none": null},
        "list": ["x", 2, 2.5, true, null, {"k": "v"}, ["nested", "yes"]],
        "stringData": map("s"),
        "data": {"n": 42, "f": 0.25, "b": false, "list": ["a", "", "yes"], "nested": {"deep": "value"}}
    })
}

#[test]
fn awkward_values_survive_both_directions() {
    let env = Env::new();
    // Ours -> sops -d.
    let text = sops::encrypt(&awkward(), &env.recipients(), SystemTime::now()).unwrap();
    let file = env.write("ours.yaml", &text);
    let out = env.sops_decrypt_json(&file);
    assert!(out.status.success(), "sops -d refused our file: {}\n{text}", stderr(&out));
    assert_eq!(parse_json(&out), awkward());
    assert_eq!(sops::decrypt(&text, std::slice::from_ref(&env.identity)).unwrap().manifest, awkward());

    // sops -e (from JSON, written as YAML by sops) -> ours.
    let input = env.write("plain.json", &serde_json::to_string_pretty(&awkward()).unwrap());
    let out = run(env
        .sops()
        .args(["--encrypt", "--input-type", "json", "--output-type", "yaml"])
        .args(["--encrypted-regex", "^(data|stringData)$", "--age", &env.recipient])
        .arg(&input));
    assert!(out.status.success(), "sops -e failed: {}", stderr(&out));
    let from_sops = String::from_utf8(out.stdout).unwrap();
    let got = sops::decrypt(&from_sops, std::slice::from_ref(&env.identity))
        .unwrap_or_else(|e| panic!("we refused sops' file: {e:#}\n{from_sops}"));
    assert_eq!(got.manifest, awkward());
}
