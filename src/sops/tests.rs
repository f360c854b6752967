use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

const SECRET: &str = "s3cr3t-Value-7f1c";

fn identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

fn recipients(ids: &[&age::x25519::Identity]) -> Recipients {
    Recipients::parse(ids.iter().map(|i| i.to_public().to_string())).unwrap()
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "dify", "namespace": "dify", "labels": {"app.kubernetes.io/name": "dify"}},
        "type": "Opaque",
        "stringData": {"SECRET_KEY": SECRET, "EMPTY": "", "MULTI": "line1\nline2\n"},
        "data": {"b64": "aGVsbG8=", "n": 5, "t": true}
    })
}

fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

#[test]
fn round_trip_keeps_the_manifest_and_its_key_order() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(1_700_000_000)).unwrap();
    let back = decrypt(&text, &[id]).unwrap();
    assert_eq!(back.manifest, secret());
    let keys: Vec<_> = back.manifest.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "type", "stringData", "data"]);
    assert_eq!(back.last_modified, "2023-11-14T22:13:20Z");
}

#[test]
fn only_data_and_string_data_values_are_encrypted() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(1_700_000_000)).unwrap();
    assert!(!text.contains(SECRET), "plaintext in the file:\n{text}");
    for key in ["SECRET_KEY", "MULTI", "b64"] {
        assert!(line_of(&text, key).contains("ENC[AES256_GCM,data:"), "{key} not encrypted:\n{text}");
        assert!(line_of(&text, key).ends_with(",type:str]"));
    }
    assert!(line_of(&text, "\"n\"").ends_with(",type:int]"), "{text}");
    assert!(line_of(&text, "t").ends_with(",type:bool]"), "{text}");
    assert_eq!(line_of(&text, "name").trim(), "name: dify");
    assert_eq!(line_of(&text, "kind"), "kind: Secret");
    assert_eq!(line_of(&text, "encrypted_regex").trim(), "encrypted_regex: ^(data|stringData)$");
    assert_eq!(line_of(&text, "lastmodified").trim(), "lastmodified: \"2023-11-14T22:13:20Z\"");
    assert_eq!(line_of(&text, "version").trim(), "version: 3.13.2");
    assert!(text.contains("    age:\n        - enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n"), "{text}");
    assert!(is_sops(&text));
    assert!(!is_sops("apiVersion: v1\nkind: Secret\n"));
    assert!(!is_sops("not: [valid"));
}

#[test]
fn empty_strings_are_not_encrypted_as_sops_does() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(0)).unwrap();
    assert_eq!(line_of(&text, "EMPTY").trim(), "EMPTY: \"\"");
    assert_eq!(decrypt(&text, &[id]).unwrap().manifest["stringData"]["EMPTY"], "");
}

#[test]
fn a_key_named_data_anywhere_on_the_path_is_encrypted_like_sops() {
    let id = identity();
    let manifest = json!({"metadata": {"labels": {"data": "x"}}, "other": {"data": ["a", "b"]}, "keep": "y"});
    let text = encrypt(&manifest, &recipients(&[&id]), at(0)).unwrap();
    assert!(line_of(&text, "data").contains("ENC["), "{text}");
    assert!(text.contains("        - ENC[AES256_GCM"), "sequence elements under data are encrypted:\n{text}");
    assert_eq!(line_of(&text, "keep"), "keep: \"y\"");
    assert_eq!(decrypt(&text, &[id]).unwrap().manifest, manifest);
}

#[test]
fn every_recipient_can_decrypt() {
    let (a, b) = (identity(), identity());
    let text = encrypt(&secret(), &recipients(&[&a, &b]), at(0)).unwrap();
    assert_eq!(text.matches("-----BEGIN AGE ENCRYPTED FILE-----").count(), 2);
    let got = decrypt(&text, &[b]).unwrap();
    assert_eq!(got.manifest, secret());
    assert_eq!(got.recipients, [a.to_public().to_string(), got.recipients[1].clone()]);
    let _ = decrypt(&text, &[a]).unwrap();
}

#[test]
fn a_stranger_cannot_decrypt_and_is_told_the_recipients() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(0)).unwrap();
    let err = format!("{:#}", decrypt(&text, &[identity()]).unwrap_err());
    assert!(err.contains(&id.to_public().to_string()), "{err}");
    assert!(err.contains("none of the given age identities"), "{err}");
}

fn tamper(text: &str, key: &str, new_line: &str) -> String {
    let old = line_of(text, key);
    text.replacen(old, new_line, 1)
}

fn assert_refused(text: &str, id: age::x25519::Identity, want: &str) {
    let err = format!("{:#}", decrypt(text, &[id]).expect_err("a tampered file must be refused"));
    assert!(err.contains(want), "expected `{want}` in: {err}");
    assert!(!err.contains(SECRET), "the error leaks a plaintext value: {err}");
}

#[test]
fn a_changed_plaintext_value_breaks_the_mac() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(0)).unwrap();
    let changed = tamper(&text, "name", "    name: evil");
    assert_refused(&changed, id, "MAC mismatch");
}

#[test]
fn a_ciphertext_moved_to_another_key_fails_authentication() {
    let id = identity();
    let manifest = json!({"stringData": {"A": SECRET, "B": "other"}});
    let text = encrypt(&manifest, &recipients(&[&id]), at(0)).unwrap();
    let a_value = line_of(&text, "A").trim().strip_prefix("A: ").unwrap().to_owned();
    let moved = tamper(&text, "B", &format!("    B: {a_value}"));
    assert_refused(&moved, id, "at `stringData.B`");
}

#[test]
fn a_changed_ciphertext_fails_authentication() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(0)).unwrap();
    let line = line_of(&text, "SECRET_KEY");
    let flipped = line.replacen("data:", "data:AA", 1);
    assert_refused(&text.replacen(line, &flipped, 1), id, "stringData.SECRET_KEY");
}

#[test]
fn a_changed_mac_or_lastmodified_is_refused() {
    let id = identity();
    let text = encrypt(&secret(), &recipients(&[&id]), at(0)).unwrap();
    let later = tamper(&text, "lastmodified", "    lastmodified: \"2030-01-01T00:00:00Z\"");
    assert_refused(&later, id.clone(), "MAC cannot be decrypted");
    let other = encrypt(&json!({"stringData": {"x": "y"}}), &recipients(&[&id]), at(0)).unwrap();
    let foreign_mac = line_of(&other, "mac").to_owned();
    assert_refused(&tamper(&text, "mac", &foreign_mac), id.clone(), "MAC cannot be decrypted");
    assert_refused(&tamper(&text, "mac", "    mac: \"\""), id, "without a MAC");
}

#[test]
fn reordered_values_break_the_mac() {
    let id = identity();
    let manifest = json!({"stringData": {"A": SECRET, "B": "other"}});
    let text = encrypt(&manifest, &recipients(&[&id]), at(0)).unwrap();
    let (a, b) = (line_of(&text, "A").to_owned(), line_of(&text, "B").to_owned());
    let swapped = text.replacen(&a, "@@A@@", 1).replacen(&b, &a, 1).replacen("@@A@@", &b, 1);
    assert_refused(&swapped, id, "MAC mismatch");
}

#[test]
fn reencrypting_an_unchanged_manifest_is_byte_identical() {
    let id = identity();
    let r = recipients(&[&id]);
    let first = encrypt(&secret(), &r, at(1_000)).unwrap();
    let previous = decrypt(&first, std::slice::from_ref(&id)).unwrap();
    assert_eq!(previous.reencrypt(&secret(), &r, at(2_000)).unwrap(), first);

    let mut changed = secret();
    changed["stringData"]["SECRET_KEY"] = json!("rotated");
    let second = previous.reencrypt(&changed, &r, at(2_000)).unwrap();
    let differing: Vec<_> = first.lines().zip(second.lines()).filter(|(a, b)| a != b).map(|(a, _)| a.trim()).collect();
    assert_eq!(differing.len(), 3, "only SECRET_KEY, lastmodified and mac change: {differing:#?}");
    assert!(differing[0].starts_with("SECRET_KEY:"));
    assert_eq!(decrypt(&second, &[id]).unwrap().manifest, changed);
}

#[test]
fn a_new_recipient_set_gets_a_new_data_key() {
    let (a, b) = (identity(), identity());
    let first = encrypt(&secret(), &recipients(&[&a]), at(0)).unwrap();
    let previous = decrypt(&first, std::slice::from_ref(&a)).unwrap();
    let second = previous.reencrypt(&secret(), &recipients(&[&b]), at(0)).unwrap();
    assert!(decrypt(&second, &[a]).is_err(), "the removed recipient must not read the new file");
    assert_eq!(decrypt(&second, &[b]).unwrap().manifest, secret());
    assert_ne!(line_of(&first, "SECRET_KEY"), line_of(&second, "SECRET_KEY"));
}

#[test]
fn an_identity_where_a_recipient_belongs_is_refused() {
    use age::secrecy::ExposeSecret;
    let id = identity();
    let err = format!("{:#}", Recipients::parse([id.to_string().expose_secret()]).unwrap_err());
    assert!(err.contains("private identity") && err.contains("age-keygen -y"), "{err}");
    assert!(!err.contains(id.to_string().expose_secret()), "{err}");
}

#[test]
fn manifests_sops_cannot_represent_are_refused() {
    let r = recipients(&[&identity()]);
    assert!(encrypt(&json!(["a"]), &r, at(0)).is_err());
    assert!(encrypt(&json!({"sops": {}}), &r, at(0)).is_err());
    assert!(encrypt(&json!({"data": {"big": u64::MAX}}), &r, at(0)).is_err());
}

#[test]
fn default_rule_and_other_metadata_shapes_are_read() {
    // A file using sops' default rule (no regex): everything not ending in _unencrypted.
    let id = identity();
    let text = encrypt(&json!({"stringData": {"a": "b"}}), &recipients(&[&id]), at(0)).unwrap();
    let without_rule = text.replace("    encrypted_regex: ^(data|stringData)$\n", "");
    // The MAC still covers the same values, all of which are under stringData: the file reads.
    assert_eq!(decrypt(&without_rule, std::slice::from_ref(&id)).unwrap().manifest, json!({"stringData": {"a": "b"}}));
    let two_rules = text.replace("    lastmodified:", "    unencrypted_suffix: _x\n    lastmodified:");
    assert!(decrypt(&two_rules, &[id]).is_err());
}
