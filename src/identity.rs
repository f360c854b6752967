//! The operator's age identities: read from the file that `--identity` or `SOPS_AGE_KEY_FILE` names, with a
//! warning when others may read it. The one place the private keys are loaded; they stay in memory.

use std::path::Path;

use anyhow::{Context, Result};

/// The operator's identities, from a file that must not be readable by others.
pub fn load(file: Option<&Path>) -> Result<Vec<age::x25519::Identity>> {
    let Some(file) = file else { return Ok(Vec::new()) };
    let text = std::fs::read_to_string(file).with_context(|| {
        format!("reading the age identity file {} (--identity / SOPS_AGE_KEY_FILE)", file.display())
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).map(|m| m.permissions().mode()).unwrap_or(0);
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the age identity file {} is readable by others (mode {:o}): `chmod 600` it",
                file.display(),
                mode & 0o777
            );
        }
    }
    crate::sops::parse_identities(&text).with_context(|| format!("the age identity file {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_is_no_identity_and_a_missing_one_names_the_file_and_the_flag() {
        assert!(load(None).unwrap().is_empty());
        let Err(error) = load(Some(Path::new("/nonexistent/age.key"))) else { panic!("a missing file loads") };
        let text = format!("{error:#}");
        assert!(text.contains("/nonexistent/age.key") && text.contains("--identity / SOPS_AGE_KEY_FILE"), "{text}");
    }

    #[test]
    fn a_key_file_gives_its_identities_and_garbage_is_refused_without_echoing_it() {
        use age::secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.txt");
        let generated = age::x25519::Identity::generate();
        std::fs::write(&file, format!("# created\n{}\n", generated.to_string().expose_secret())).unwrap();
        assert_eq!(load(Some(&file)).unwrap().len(), 1);
        std::fs::write(&file, "not-a-key-but-secret-text\n").unwrap();
        let Err(error) = load(Some(&file)) else { panic!("garbage loads") };
        let text = format!("{error:#}");
        assert!(text.contains("keys.txt") && !text.contains("not-a-key-but-secret-text"), "{text}");
    }
}
