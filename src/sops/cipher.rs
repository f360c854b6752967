//! The SOPS value cipher: AES-256-GCM with a 32-byte IV, written as
//! `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]` (standard base64 with padding).
//!
//! The additional authenticated data binds a value to its place: it is the path of mapping keys
//! joined by `:` plus a trailing `:` (`stringData.password` → `stringData:password:`; sequence
//! elements share their parent's path). The MAC uses the same cipher with the `lastmodified`
//! timestamp as AAD.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use super::yaml::Scalar;

/// AES-256-GCM with the 32-byte nonce sops uses.
type Aes256Gcm32 = AesGcm<Aes256, U32>;

pub(crate) const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// The 32-byte data key every value of one file is encrypted with.
pub(crate) type DataKey = Zeroizing<[u8; 32]>;

pub(crate) fn new_data_key() -> DataKey {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    key
}

pub(crate) fn new_iv() -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    iv
}

/// Plaintext bytes, wiped from memory when dropped.
pub(crate) type Plain = Zeroizing<Vec<u8>>;

/// The bytes sops feeds to the MAC and encrypts for a plaintext scalar, with its type name.
/// `None` for null, which sops neither hashes nor encrypts.
pub(crate) fn plain_bytes(value: &Scalar) -> anyhow::Result<Option<(Plain, &'static str)>> {
    let (bytes, kind) = match value {
        Scalar::Null => return Ok(None),
        Scalar::Str(s) => (s.as_bytes().to_vec(), "str"),
        Scalar::Int(i) => (i.to_string().into_bytes(), "int"),
        Scalar::Float(f) => (go_float(*f).into_bytes(), "float"),
        Scalar::Bool(b) => ((if *b { "True" } else { "False" }).as_bytes().to_vec(), "bool"),
        Scalar::Uint(_) => bail!("integers above 9223372036854775807 are not supported by sops"),
        Scalar::Time(_) => bail!("unquoted YAML timestamps are not supported (sops reformats them); quote the value"),
    };
    Ok(Some((Zeroizing::new(bytes), kind)))
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() }
    } else {
        f.to_string()
    }
}

/// Encrypts one scalar. Empty strings stay empty, as with sops.
pub(crate) fn encrypt(value: &Scalar, key: &DataKey, aad: &str, iv: &[u8; IV_LEN]) -> anyhow::Result<String> {
    let Some((plain, kind)) = plain_bytes(value)? else {
        bail!("null values are not encrypted");
    };
    if plain.is_empty() && kind == "str" {
        return Ok(String::new());
    }
    let cipher = Aes256Gcm32::new_from_slice(key.as_ref()).context("the data key is not 32 bytes")?;
    let sealed = cipher
        .encrypt(Nonce::<U32>::from_slice(iv), Payload { msg: &plain, aad: aad.as_bytes() })
        .map_err(|_| anyhow::anyhow!("AES-GCM encryption failed"))?;
    let (data, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    Ok(format!("ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]", B64.encode(data), B64.encode(iv), B64.encode(tag)))
}

/// A parsed `ENC[...]` value.
pub(crate) struct Encrypted {
    data: Vec<u8>,
    pub(crate) iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

/// Parses `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`. Errors never echo the input: at a path
/// that should be encrypted, a value that does not parse may be plaintext.
pub(crate) fn parse(value: &str) -> anyhow::Result<Encrypted> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]").expect("ENC regex is valid")
    });
    let Some(caps) = re.captures(value) else {
        bail!("the value is not in sops' ENC[AES256_GCM,data:…,iv:…,tag:…,type:…] format");
    };
    let field =
        |i: usize, name: &str| B64.decode(&caps[i]).with_context(|| format!("the {name} field is not valid base64"));
    Ok(Encrypted { data: field(1, "data")?, iv: field(2, "iv")?, tag: field(3, "tag")?, kind: caps[4].to_owned() })
}

/// Decrypts one `ENC[...]` value (an empty string stays empty) into its typed scalar; the MAC
/// covers [`plain_bytes`] of it, as sops hashes the parsed value.
pub(crate) fn decrypt(value: &str, key: &DataKey, aad: &str) -> anyhow::Result<Scalar> {
    if value.is_empty() {
        return Ok(Scalar::Str(String::new()));
    }
    let enc = parse(value)?;
    if enc.iv.len() != IV_LEN {
        bail!("the IV is {} bytes; sops writes {IV_LEN}", enc.iv.len());
    }
    if enc.tag.len() != TAG_LEN {
        bail!("the GCM tag is {} bytes; expected {TAG_LEN}", enc.tag.len());
    }
    let cipher = Aes256Gcm32::new_from_slice(key.as_ref()).context("the data key is not 32 bytes")?;
    let mut sealed = enc.data;
    sealed.extend_from_slice(&enc.tag);
    let plain = Zeroizing::new(
        cipher
            .decrypt(Nonce::<U32>::from_slice(&enc.iv), Payload { msg: &sealed, aad: aad.as_bytes() })
            .map_err(|_| {
                anyhow::anyhow!("authentication failed: the value was modified, moved to another key, or encrypted with another data key")
            })?,
    );
    let text = || std::str::from_utf8(&plain).context("the decrypted value is not UTF-8");
    let scalar = match enc.kind.as_str() {
        "str" | "bytes" | "time" => Scalar::Str(text()?.to_owned()),
        "int" => Scalar::Int(text()?.parse().context("the decrypted value of type int is not an integer")?),
        "float" => Scalar::Float(text()?.parse().context("the decrypted value of type float is not a number")?),
        "bool" => Scalar::Bool(match text()? {
            "True" | "true" | "TRUE" | "t" | "T" | "1" => true,
            "False" | "false" | "FALSE" | "f" | "F" | "0" => false,
            _ => bail!("the decrypted value of type bool is not a boolean"),
        }),
        other => bail!("unsupported sops value type `{other}`"),
    };
    Ok(scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_type_and_binds_the_path() {
        let key = new_data_key();
        for value in [Scalar::Str("s3cr3t".into()), Scalar::Int(-42), Scalar::Float(1.5), Scalar::Bool(true)] {
            let enc = encrypt(&value, &key, "data:password:", &new_iv()).unwrap();
            assert!(enc.starts_with("ENC[AES256_GCM,data:"), "{enc}");
            let back = decrypt(&enc, &key, "data:password:").unwrap();
            assert_eq!(back, value);
            let err = decrypt(&enc, &key, "data:other:").expect_err("another path must not decrypt");
            assert!(format!("{err:#}").contains("authentication failed"));
        }
    }

    #[test]
    fn empty_strings_are_not_encrypted() {
        let key = new_data_key();
        assert_eq!(encrypt(&Scalar::Str(String::new()), &key, "data:x:", &new_iv()).unwrap(), "");
        assert_eq!(decrypt("", &key, "data:x:").unwrap(), Scalar::Str(String::new()));
    }

    #[test]
    fn the_iv_is_32_bytes_and_the_tag_16() {
        let enc = encrypt(&Scalar::Str("x".into()), &new_data_key(), "a:", &new_iv()).unwrap();
        let parsed = parse(&enc).unwrap();
        assert_eq!(parsed.iv.len(), 32);
        assert_eq!(parsed.tag.len(), 16);
        assert_eq!(parsed.kind, "str");
    }

    #[test]
    fn a_plaintext_value_is_refused_without_being_echoed() {
        let err = decrypt("hunter2", &new_data_key(), "data:x:").err().unwrap();
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[test]
    fn floats_hash_like_go() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
