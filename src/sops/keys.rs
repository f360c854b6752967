//! age recipients and the wrapping of the data key: one ASCII-armored age file per recipient,
//! as `sops.age[] {recipient, enc}`.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use anyhow::{Context, bail};
use zeroize::Zeroizing;

use super::cipher::DataKey;

/// Validated age X25519 recipients (`age1…`), in the order given, without duplicates.
#[derive(Clone)]
pub struct Recipients(Vec<(String, age::x25519::Recipient)>);

impl Recipients {
    /// Parses recipients; refuses private identities, unsupported kinds and malformed keys with
    /// a message that says what to pass instead. An identity is never echoed.
    pub fn parse<I, S>(items: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed: Vec<(String, age::x25519::Recipient)> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let text = item.as_ref().trim();
            let n = index + 1;
            if text.is_empty() {
                bail!("age recipient #{n} is empty");
            }
            if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                bail!(
                    "age recipient #{n} is a private identity (AGE-SECRET-KEY-…), not a recipient: never put it in \
                     configuration; pass its public recipient instead, which `age-keygen -y <keyfile>` prints (age1…)"
                );
            }
            if text.starts_with("age1pq1") {
                bail!(
                    "age recipient #{n} ({text}) is a post-quantum recipient; only X25519 recipients (age1…) are supported"
                );
            }
            if text.starts_with("ssh-") {
                bail!("age recipient #{n} is an SSH key; only age X25519 recipients (age1…) are supported");
            }
            if !text.starts_with("age1") {
                bail!(
                    "age recipient #{n} is not an age recipient: expected `age1…` as printed by `age-keygen -y <keyfile>`"
                );
            }
            if text.matches('1').count() > 1 {
                bail!(
                    "age recipient #{n} ({text}) is an age plugin recipient; only X25519 recipients (age1…) are supported"
                );
            }
            let recipient = age::x25519::Recipient::from_str(text)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("age recipient #{n} ({text}) is not a valid age X25519 recipient"))?;
            if !parsed.iter().any(|(s, _)| s == text) {
                parsed.push((text.to_owned(), recipient));
            }
        }
        if parsed.is_empty() {
            bail!("no age recipients given: at least one `age1…` recipient is needed to encrypt");
        }
        Ok(Self(parsed))
    }

    /// The recipients as `age1…` strings.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(s, _)| s.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn entries(&self) -> &[(String, age::x25519::Recipient)] {
        &self.0
    }
}

/// A comma-separated list, as `sops --age` takes it.
impl FromStr for Recipients {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::parse(s.split(',').filter(|part| !part.trim().is_empty()))
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Recipients {}

/// Parses the text of an age key file (what `SOPS_AGE_KEY_FILE` points at, or a Flux
/// `*.agekey` Secret value): one `AGE-SECRET-KEY-1…` identity per line, `#` comments and blank
/// lines ignored. Reading the file is the caller's business; errors never echo a key.
pub fn parse_identities(text: &str) -> anyhow::Result<Vec<age::x25519::Identity>> {
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = index + 1;
        if line.starts_with("age1") {
            bail!(
                "line {n} of the age key file is a public recipient (age1…); the key file must hold the private \
                 identity (AGE-SECRET-KEY-1…) that `age-keygen` wrote"
            );
        }
        let identity = age::x25519::Identity::from_str(line).map_err(|_| {
            anyhow::anyhow!("line {n} of the age key file is not an age X25519 identity (AGE-SECRET-KEY-1…)")
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        bail!("the age key file holds no identity (expected a line AGE-SECRET-KEY-1…, as `age-keygen` writes)");
    }
    Ok(identities)
}

/// Encrypts the data key to one recipient and armors it, as `sops` writes `enc`.
pub(crate) fn wrap(key: &DataKey, recipient: &age::x25519::Recipient) -> anyhow::Result<String> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .context("could not set up age encryption of the data key")?;
    let armor = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).context("could not start the age armor")?;
    let mut writer = encryptor.wrap_output(armor).context("could not start age encryption of the data key")?;
    writer.write_all(key.as_ref()).context("could not encrypt the data key with age")?;
    let armor = writer.finish().context("could not finish age encryption of the data key")?;
    let bytes = armor.finish().context("could not finish the age armor")?;
    String::from_utf8(bytes).context("the age armor is not UTF-8")
}

/// Decrypts an armored data key with any of the identities.
pub(crate) fn unwrap(armored: &str, identities: &[age::x25519::Identity]) -> anyhow::Result<DataKey> {
    let decryptor = age::Decryptor::new(ArmoredReader::new(armored.as_bytes()))
        .context("the age-encrypted data key is malformed")?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .context("none of the age identities can decrypt the data key")?;
    let mut plain = Zeroizing::new(Vec::with_capacity(32));
    reader.read_to_end(&mut plain).context("the age-encrypted data key is corrupt")?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the age-encrypted data key is {} bytes; a sops data key is 32", plain.len()))?;
    Ok(Zeroizing::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn a_private_identity_is_refused_and_not_echoed() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let err = Recipients::parse([secret.expose_secret()]).expect_err("an identity is not a recipient");
        let msg = format!("{err:#}");
        assert!(msg.contains("private identity"), "{msg}");
        assert!(msg.contains("age-keygen -y"), "{msg}");
        assert!(!msg.contains(secret.expose_secret()), "the identity leaked into the error: {msg}");
    }

    #[test]
    fn recipients_parse_validate_and_dedupe() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        let r: Recipients = format!("{a}, {b},{a}").parse().unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [a.as_str(), b.as_str()]);
        assert!(Recipients::parse(["age1notvalid"]).is_err());
        assert!(Recipients::parse(["ssh-ed25519 AAAA"]).is_err());
        assert!(Recipients::parse(Vec::<String>::new()).is_err());
        assert!("".parse::<Recipients>().is_err());
    }

    #[test]
    fn key_files_parse_and_recipients_are_refused_there() {
        use age::secrecy::ExposeSecret;
        let (a, b) = (age::x25519::Identity::generate(), age::x25519::Identity::generate());
        let text = format!(
            "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n\n{}\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let parsed = parse_identities(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].to_public().to_string(), b.to_public().to_string());

        let Err(err) = parse_identities(&a.to_public().to_string()) else { panic!("a recipient is not an identity") };
        let err = format!("{err:#}");
        assert!(err.contains("public recipient"), "{err}");
        // A wrong last character breaks the bech32 checksum.
        let mut garbled = a.to_string().expose_secret().to_owned();
        let last = garbled.pop().unwrap();
        garbled.push(if last == 'Q' { 'P' } else { 'Q' });
        let Err(err) = parse_identities(&garbled) else { panic!("a garbled key must be refused") };
        let err = format!("{err:#}");
        assert!(!err.contains(&garbled[20..]), "the key leaked into the error: {err}");
        assert!(parse_identities("# only comments\n").is_err());
    }

    #[test]
    fn wrap_and_unwrap() {
        let identity = age::x25519::Identity::generate();
        let key = super::super::cipher::new_data_key();
        let armored = wrap(&key, &identity.to_public()).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"), "{armored}");
        assert!(armored.ends_with("-----END AGE ENCRYPTED FILE-----\n"), "{armored}");
        assert_eq!(*unwrap(&armored, &[identity]).unwrap(), *key);
        assert!(unwrap(&armored, &[age::x25519::Identity::generate()]).is_err());
    }
}
