//! `secret set` and `secret list`, wired: ops repo → config → the Secret file → `overlay::set_secret` → the same
//! commit-and-push path as `sync`. The value is read from stdin or `--from-file` only (never argv or the
//! environment), kept in memory and wiped when dropped; it is never printed or written other than encrypted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::config::Selection;
use crate::exit::{Exit, Failure};
use crate::identity;
use crate::overlay::{self, Listed, SetRequest};
use crate::sync::{Outcome, Remote, Update, open_repo, publish};

/// What `secret set` sets.
#[derive(Debug, Clone)]
pub struct SetInputs {
    /// The key in the Secret's stringData.
    pub name: String,
    /// A value was given on the command line: refused.
    pub value_on_command_line: bool,
    /// Read the value from this file instead of stdin.
    pub from_file: Option<PathBuf>,
    /// The reason for setting a key sync generates.
    pub force: Option<String>,
    /// The operator's age identity file.
    pub identity: Option<PathBuf>,
    pub dry_run: bool,
}

/// `secret set NAME`: one commit (and push) when the value is new, none when the key already holds it.
pub async fn set(remote: &Remote, selection: &Selection, args: &SetInputs) -> Result<Outcome> {
    if args.value_on_command_line {
        return Err(Failure::error(
            Exit::Usage,
            "secret set takes the value from stdin or --from-file, never from the command line (it would stay in \
             shell history and `ps`): `… | dify-gitops secret set NAME`",
        ));
    }
    // The value first: a refused name or a missing identity must not leave it waiting on a pipe.
    let value = read_value(args.from_file.as_deref())?;
    let mut repo = open_repo(remote)?;
    let env = selection.load(repo.workdir())?;
    let identities = identity::load(args.identity.as_deref())?;
    let envs = [env];
    let outcomes = publish(&mut repo, &envs, args.dry_run, |root, env| {
        let path = root.join(&env.directory).join(overlay::SECRETS_FILE);
        let existing = crate::opsrepo::read_if_exists(&path)?;
        let request = SetRequest {
            name: &args.name,
            value: value.as_str(),
            force: args.force.as_deref(),
            identities: &identities,
            now: SystemTime::now(),
        };
        let (file, changes) = overlay::set_secret(env, existing.as_deref(), &request)?;
        Ok(Update { files: vec![(env.directory.join(overlay::SECRETS_FILE), file)], changes })
    })
    .await?;
    Ok(outcomes.into_iter().next().expect("one outcome per environment"))
}

/// What `secret list` reports: key names only.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub environment: String,
    pub secrets: Vec<Listed>,
}

pub fn list(remote: &Remote, selection: &Selection) -> Result<Listing> {
    let repo = open_repo(remote)?;
    let env = selection.load(repo.workdir())?;
    let path = repo.workdir().join(&env.directory).join(overlay::SECRETS_FILE);
    let text = crate::opsrepo::read_if_exists(&path)?
        .with_context(|| format!("{} does not exist: run `dify-gitops sync` first", path.display()))?;
    let secrets = overlay::list_secrets(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(Listing { environment: env.name, secrets })
}

/// The value from the file, or from stdin when it is not a terminal (typing would show it on screen). One
/// trailing newline (what `echo` and editors add) is dropped. Errors never echo the value.
fn read_value(from_file: Option<&Path>) -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    match from_file {
        Some(file) => {
            let mut opened =
                std::fs::File::open(file).with_context(|| format!("reading the value from {}", file.display()))?;
            opened.read_to_end(&mut bytes).with_context(|| format!("reading the value from {}", file.display()))?;
        }
        None => {
            // SAFETY: isatty on the process's stdin descriptor.
            if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
                bail!(
                    "the value is read from stdin, which is a terminal (it would show as you type): pipe it in, \
                     e.g. `pass show openai | dify-gitops secret set openai-api-key`, or pass --from-file FILE"
                );
            }
            std::io::stdin().lock().read_to_end(&mut bytes).context("reading the value from stdin")?;
        }
    }
    for ending in [&b"\r\n"[..], &b"\n"[..]] {
        if bytes.ends_with(ending) {
            let keep = bytes.len() - ending.len();
            bytes.truncate(keep);
            break;
        }
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("the value is not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_string()))
}
