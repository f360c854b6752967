//! The rules: what must never be in an ops repo, found in one file's text. Pure: a path and its text in, findings
//! out; a finding names the place, the key, a redacted hint and the fix, never the value.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::sops;

static AGE_IDENTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"AGE-SECRET-KEY-(?:PQ-)?1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{20,}|AGE-PLUGIN-[A-Z0-9-]+-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{20,}")
        .expect("valid regex")
});
static PRIVATE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----").expect("valid regex"));
static OPENAI_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9_-])(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})").expect("valid regex")
});
static LINE_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"line (\d+)").expect("valid regex"));
static LINE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*(?:-\s+)?["']?([^"':#\s][^"':]*)["']?\s*[:=]"#).expect("valid regex"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Makes the audit fail (exit 7).
    Error,
    /// Reported, does not fail the audit.
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// An age identity (`AGE-SECRET-KEY-1…`).
    AgeIdentity,
    /// A PEM private key (`-----BEGIN … PRIVATE KEY-----`).
    PrivateKey,
    /// A Kubernetes Secret whose data is not SOPS-encrypted.
    PlaintextSecret,
    /// A SOPS file with a `data`/`stringData` value that is not `ENC[…]`.
    UnencryptedSopsValue,
    /// A SOPS file that does not decrypt or whose MAC does not verify with the given identity.
    SopsMac,
    /// An OpenAI-style API key (`sk-…`) anywhere.
    ApiKey,
    /// A password, token, secret or key under such a key name in a ConfigMap, manifest or values file.
    SecretInConfig,
    /// A SOPS file that could not be verified: it is not encrypted for the given identity.
    SopsUnverified,
    /// A YAML document that does not parse, so it could not be checked.
    InvalidYaml,
}

impl Rule {
    fn severity(self) -> Severity {
        if matches!(self, Rule::SopsUnverified | Rule::InvalidYaml) { Severity::Warning } else { Severity::Error }
    }

    pub(super) fn fix(self, history: bool) -> String {
        let fix = match self {
            Rule::AgeIdentity => {
                "remove the file; an age identity belongs in a password store and, for Flux, in the cluster's \
                 sops-age Secret only; generate a new one (age-keygen) and re-encrypt for its recipient"
            }
            Rule::PrivateKey => "remove the file, revoke the key and issue a new one; keep private keys out of git",
            Rule::PlaintextSecret => {
                "encrypt it: sops -e -i --encrypted-regex '^(data|stringData)$' --age <age1…> FILE (or let \
                 `dify-gitops sync` write it), and rotate the values: they were readable in git"
            }
            Rule::UnencryptedSopsValue => {
                "a value was added after encryption: `sops -e` the plaintext file again (or `sops edit FILE`), \
                 and rotate that value"
            }
            Rule::SopsMac => {
                "the file was changed after encryption (or is corrupt): restore it from git history or re-encrypt \
                 it with `sops -e`; `sops -d` refuses it and Flux would apply it unchecked"
            }
            Rule::ApiKey | Rule::SecretInConfig => {
                "move the value into the SOPS-encrypted Secret (e.g. `dify-gitops secret set openai-api-key` \
                 with the value on stdin: stringData.openai-api-key in dify-secrets.sops.yaml, kept by sync) and \
                 reference it (secretKeyRef / existingSecret); rotate it"
            }
            Rule::SopsUnverified => "pass --identity with a key this file is encrypted for to verify its MAC",
            Rule::InvalidYaml => "fix the YAML (kubectl and Flux would refuse it too), then audit again",
        };
        if history && !matches!(self, Rule::SopsUnverified | Rule::SopsMac | Rule::InvalidYaml) {
            format!(
                "{fix}; it stays readable in the history: treat it as leaked (rotate it), then purge it with \
                 `git filter-repo` if your policy requires"
            )
        } else {
            fix.to_string()
        }
    }
}

/// One problem, located without its value.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    /// Path relative to the repository root.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The commit (full id) that introduced the file version, for history findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The key (dotted path in the document) holding the value, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What was found, redacted: its kind and length, never its characters.
    pub hint: String,
    pub message: String,
    pub fix: String,
}

/// Every problem in one file. Pure: `path` is only used to decide whether it is YAML and to label findings.
pub fn scan(path: &str, text: &str, identities: &[age::x25519::Identity]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut push = |rule: Rule, line: Option<usize>, key: Option<String>, hint: String, message: String| {
        findings.push(Finding {
            rule,
            severity: rule.severity(),
            path: path.to_string(),
            line,
            commit: None,
            key,
            hint,
            message,
            fix: rule.fix(false),
        });
    };
    for (index, line) in text.lines().enumerate() {
        let n = Some(index + 1);
        let key = LINE_KEY.captures(line).map(|c| c[1].trim().to_string());
        for found in AGE_IDENTITY.find_iter(line) {
            let hint =
                format!("{}… ({} chars)", &found.as_str()[..found.as_str().find('1').unwrap_or(0) + 1], found.len());
            push(Rule::AgeIdentity, n, key.clone(), hint, "an age identity (private key) is committed".into());
        }
        if let Some(found) = PRIVATE_KEY.find(line) {
            push(Rule::PrivateKey, n, key.clone(), found.as_str().to_string(), "a PEM private key is committed".into());
        }
        for captures in OPENAI_KEY.captures_iter(line) {
            let hint = format!("sk-… ({} chars)", captures[1].len());
            push(Rule::ApiKey, n, key.clone(), hint, "an OpenAI-style API key (sk-…) in plain text".into());
        }
    }
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        for (start, chunk) in documents(text) {
            scan_document(start, chunk, identities, &mut push);
        }
    }
    // An sk-… value of a plain Secret is one problem, not two.
    let covered: HashSet<Option<usize>> = findings
        .iter()
        .filter(|f| matches!(f.rule, Rule::PlaintextSecret | Rule::UnencryptedSopsValue))
        .map(|f| f.line)
        .collect();
    findings.retain(|f| f.rule != Rule::ApiKey || !covered.contains(&f.line));
    findings
}

type Push<'a> = dyn FnMut(Rule, Option<usize>, Option<String>, String, String) + 'a;

/// The documents of a multi-document YAML text, each with the (0-based) line it starts at.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start_line, mut start_byte, mut offset) = (0, 0, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare == "..." {
            docs.push((start_line, &text[start_byte..offset]));
            start_line = index + 1;
            start_byte = offset + line.len();
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.into_iter().filter(|(_, d)| !d.trim().is_empty()).collect()
}

fn scan_document(start: usize, chunk: &str, identities: &[age::x25519::Identity], push: &mut Push) {
    let locate = |path: &str, value: &str| Some(start + locate_line(chunk, path, value) + 1);
    let doc = match serde_saphyr::from_str::<Value>(chunk) {
        Ok(doc) => doc,
        Err(error) => {
            // The parser's message may quote the document: keep only where it failed.
            let at = error.to_string().lines().find(|l| l.contains("line")).map(str::to_string).unwrap_or_default();
            let line = LINE_NUMBER.captures(&at).and_then(|c| c[1].parse::<usize>().ok()).map(|l| start + l);
            push(
                Rule::InvalidYaml,
                line.or(Some(start + 1)),
                None,
                "not parsed".into(),
                "a YAML document that does not parse: not checked".into(),
            );
            return;
        }
    };
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if sops::is_sops(chunk) {
        for (key, value) in payload(&doc) {
            if !value.is_empty() && !value.starts_with("ENC[") {
                push(
                    Rule::UnencryptedSopsValue,
                    locate(&key, &value),
                    Some(key),
                    format!("{} chars, not ENC[…]", value.chars().count()),
                    "a value in a SOPS file is not encrypted".into(),
                );
            }
        }
        if !identities.is_empty() {
            verify_sops(start, chunk, identities, push);
        }
        return;
    }
    if kind == "Secret" {
        for (key, value) in payload(&doc) {
            if !value.is_empty() {
                push(
                    Rule::PlaintextSecret,
                    locate(&key, &value),
                    Some(key),
                    format!("{} chars", value.chars().count()),
                    format!("Secret {} is not SOPS-encrypted", name_of(&doc)),
                );
            }
        }
        return;
    }
    let mut found = Vec::new();
    sensitive_values(&doc, "", &mut found);
    for (key, value) in found {
        let what = if kind.is_empty() { "a values file".to_string() } else { format!("{kind} {}", name_of(&doc)) };
        push(
            Rule::SecretInConfig,
            locate(&key, &value),
            Some(key),
            format!("{} chars", value.chars().count()),
            format!("a password, token or key in plain text in {what}"),
        );
    }
}

fn verify_sops(start: usize, chunk: &str, identities: &[age::x25519::Identity], push: &mut Push) {
    let mine: Vec<String> = identities.iter().map(|i| i.to_public().to_string()).collect();
    let line = Some(start + locate_line(chunk, "sops.mac", "") + 1);
    if !mine.iter().any(|r| chunk.contains(r.as_str())) {
        push(
            Rule::SopsUnverified,
            line,
            Some("sops.mac".into()),
            "not encrypted for the given identity".into(),
            "SOPS file not verified: none of the given identities is among its recipients".into(),
        );
        return;
    }
    if let Err(error) = sops::decrypt(chunk, identities) {
        // sops::decrypt never puts plaintext into its errors.
        push(
            Rule::SopsMac,
            line,
            Some("sops.mac".into()),
            "does not verify".into(),
            format!("SOPS file does not decrypt or its MAC does not verify: {error:#}"),
        );
    }
}

/// `data.*` and `stringData.*` string values of a Secret, as (dotted key, value).
fn payload(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = doc.get(field) {
            for (key, value) in map {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push((format!("{field}.{key}"), text));
            }
        }
    }
    out
}

fn name_of(doc: &Value) -> String {
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("?");
    match meta.and_then(|m| m.get("namespace")).and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Literal values under secret-looking keys anywhere in a tree, descending into embedded YAML documents (a
/// ConfigMap's `values.yaml: |`) and Kubernetes env entries (`{name: DB_PASSWORD, value: …}`).
fn sensitive_values(node: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    let join = |key: &str| if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
    match node {
        Value::Object(map) => {
            if let (Some(Value::String(name)), Some(Value::String(value))) = (map.get("name"), map.get("value"))
                && is_sensitive_key(name)
                && is_literal(value)
            {
                out.push((join(name), value.clone()));
            }
            for (key, value) in map {
                match value {
                    Value::String(text) if text.contains('\n') && text.contains(':') => {
                        match serde_saphyr::from_str::<Value>(text) {
                            Ok(inner @ Value::Object(_)) => sensitive_values(&inner, &join(key), out),
                            _ if is_sensitive_key(key) && is_literal(text) => out.push((join(key), text.clone())),
                            _ => {}
                        }
                    }
                    Value::String(text) if is_sensitive_key(key) && is_literal(text) => {
                        out.push((join(key), text.clone()))
                    }
                    Value::Number(number) if is_sensitive_key(key) && number.to_string().len() >= 4 => {
                        out.push((join(key), number.to_string()))
                    }
                    Value::Object(_) | Value::Array(_) => sensitive_values(value, &join(key), out),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                sensitive_values(item, &join(&index.to_string()), out);
            }
        }
        _ => {}
    }
}

/// A key that names a password, secret, token or key — and not a reference to one (`existingSecret`,
/// `secretName`, `passwordFile`, `tokenRef`, …).
pub fn is_sensitive_key(key: &str) -> bool {
    const WORDS: &[&str] =
        &["password", "passwd", "secret", "token", "apikey", "privatekey", "accesskey", "credential"];
    const REFERENCE_SUFFIXES: &[&str] = &[
        "ref",
        "refs",
        "name",
        "names",
        "file",
        "files",
        "path",
        "dir",
        "enabled",
        "secrets",
        "ttl",
        "length",
        "type",
        "mount",
        "env",
        "keys",
        "provider",
        "url",
        "uri",
        "endpoint",
        "header",
        "expiry",
        "expiration",
        "lifetime",
        "seconds",
        "minutes",
        "duration",
        "format",
        "policy",
        "selector",
        "audience",
        "issuer",
        "id",
        "field",
        "template",
        "class",
        "store",
        "mode",
        "version",
    ];
    let normal: String = key.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    if !WORDS.iter().any(|w| normal.contains(w)) || normal.starts_with("existing") {
        return false;
    }
    // `passwordKey`, `apiKeyKey`, `secretKeyKey`: the name of a key inside a Secret, not the secret.
    if let Some(stem) = normal.strip_suffix("key")
        && ["password", "passwd", "token", "apikey", "privatekey", "accesskey", "secretkey", "credential"]
            .iter()
            .any(|w| stem.ends_with(w))
    {
        return false;
    }
    !REFERENCE_SUFFIXES.iter().any(|s| normal.ends_with(s))
}

/// A value that is itself the secret: not empty, not a placeholder or reference, not ciphertext, not a path.
fn is_literal(value: &str) -> bool {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    !(v.is_empty()
        || v.starts_with("${")
        || v.starts_with("$(")
        || v.starts_with("{{")
        || v.starts_with("ENC[")
        || v.starts_with('/')
        || (v.starts_with('<') && v.ends_with('>'))
        || lower.starts_with("vault:")
        || lower.starts_with("ref+")
        || matches!(lower.as_str(), "true" | "false" | "null" | "~" | "none" | "redacted" | "<redacted>"))
        && !OPENAI_KEY.is_match(v)
}

/// The 0-based line of `chunk` where the dotted `path` holds `value`: each parent key is looked for after the
/// previous one, then a line with the last key and the value's start, else with the value's start, else with the
/// key; else the first line. The value is only compared, never kept.
fn locate_line(chunk: &str, path: &str, value: &str) -> usize {
    let probe: String = value.lines().next().unwrap_or("").trim().chars().take(16).collect();
    let lines: Vec<&str> = chunk.lines().collect();
    let has_key = |line: &str, key: &str| {
        LINE_KEY.captures(line).is_some_and(|c| c[1].trim() == key) || line.contains(&format!("\"{key}\":"))
    };
    let has_value = |line: &str| !probe.is_empty() && line.contains(probe.as_str());
    let segments: Vec<&str> =
        path.split('.').filter(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit())).collect();
    let Some((last, parents)) = segments.split_last() else { return 0 };
    let mut from = 0;
    for parent in parents {
        if let Some(i) = lines[from..].iter().position(|l| has_key(l, parent)) {
            from += i;
        }
    }
    let find = |from: usize| {
        let rest = &lines[from..];
        rest.iter()
            .position(|l| has_key(l, last) && has_value(l))
            .or_else(|| rest.iter().position(|l| has_value(l)))
            .or_else(|| rest.iter().position(|l| has_key(l, last)))
            .map(|i| from + i)
    };
    find(from).or_else(|| find(0)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(path: &str, text: &str) -> Vec<(Rule, Option<usize>, Option<String>)> {
        scan(path, text, &[]).into_iter().map(|f| (f.rule, f.line, f.key)).collect()
    }

    #[test]
    fn sensitive_keys_are_names_of_secrets_not_references_to_them() {
        for key in ["password", "DB_PASSWORD", "redis-password", "apiKey", "OPENAI_API_KEY", "secretKey", "token"] {
            assert!(is_sensitive_key(key), "{key}");
        }
        for key in
            ["existingSecret", "secretName", "passwordFile", "tokenRef", "secretKeyRef", "passwordKey", "apiKeyKey"]
        {
            assert!(!is_sensitive_key(key), "{key}");
        }
    }

    #[test]
    fn a_plain_secret_is_found_per_key_with_its_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: y}\n---\napiVersion: v1\n\
                    kind: Secret\nmetadata: {name: s}\nstringData:\n  user: admin\n  password: hunter22\n";
        assert_eq!(
            rules("s.yaml", text),
            vec![
                (Rule::PlaintextSecret, Some(10), Some("stringData.user".into())),
                (Rule::PlaintextSecret, Some(11), Some("stringData.password".into()))
            ]
        );
    }

    #[test]
    fn values_in_configmaps_and_embedded_values_are_found_and_references_are_not() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: v}\ndata:\n  values.yaml: |\n    secrets:\n      \
                    existingSecret: dify-secrets\n    postgresql:\n      password: s3cr3t-pass\n    \
                    ref: ${PASSWORD}\n  REDIS_PASSWORD: \"\"\n";
        assert_eq!(
            rules("v.yaml", text),
            vec![(Rule::SecretInConfig, Some(9), Some("data.values.yaml.postgresql.password".into()))]
        );
    }

    #[test]
    fn env_entries_with_literal_values_are_found() {
        let text = "kind: Deployment\nspec:\n  env:\n  - name: API_TOKEN\n    value: abcdef0123456789\n  \
                    - name: FROM_SECRET\n    valueFrom: {secretKeyRef: {name: s, key: k}}\n";
        assert_eq!(rules("d.yml", text), vec![(Rule::SecretInConfig, Some(5), Some("spec.env.0.API_TOKEN".into()))]);
    }

    #[test]
    fn identities_keys_and_api_keys_are_found_anywhere_without_their_value() {
        let identity = format!("AGE-SECRET-KEY-1{}", "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L".repeat(2));
        let api = format!("sk-proj-{}", "a1B2c3D4e5".repeat(4));
        let pem = format!("-----BEGIN {} KEY-----", "PRIVATE");
        let text = format!("# keys\n{identity}\nopenai: {api}\n{pem}\n");
        let findings = scan("notes.txt", &text, &[]);
        let got: Vec<_> = findings.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(got, vec![(Rule::AgeIdentity, Some(2)), (Rule::ApiKey, Some(3)), (Rule::PrivateKey, Some(4))]);
        let printed = serde_json::to_string(&findings).unwrap();
        assert!(!printed.contains(&identity[20..]) && !printed.contains(&api[10..]), "{printed}");
    }

    #[test]
    fn documents_split_on_separators_with_their_start_lines() {
        let docs = documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n");
        assert_eq!(docs, vec![(0, "a: 1\n"), (2, "b: 2\n"), (4, "c: 3\n")]);
    }
}
