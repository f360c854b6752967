//! Exit codes: one place that says what each number means, used by `main` and documented in `--help`.

use std::fmt;

/// What the process tells a script or a scheduled CI job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success (for `preflight`: nothing failed; for `sync`: nothing changed).
    Ok = 0,
    /// An error: bad input, unreachable cluster or repository, I/O. The message says what and how to fix it.
    Error = 1,
    /// A usage error: unknown flag or command, bad flag value.
    Usage = 2,
    /// `preflight`: at least one check failed.
    ChecksFailed = 3,
    /// `discover`: the Traefik Service got no load-balancer address within `--timeout`.
    Timeout = 4,
    /// `verify`: at least one probe of the live install failed.
    VerifyFailed = 5,
    /// `render`, `sync`, `diff`: the overlay changed (sync: a commit was made and pushed).
    Changed = 6,
    /// `audit`: the ops repo holds a plaintext secret, a key or identity, or a SOPS file that does not verify.
    AuditFailed = 7,
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (preflight: no check failed)
  1  error: the message names the object or value and the fix
  2  usage error
  3  preflight: at least one check failed
  4  discover: no load-balancer address within --timeout
  5  verify: at least one probe of the live install failed
  6  render/sync/diff: the overlay changed (sync: committed and pushed); 0 means nothing changed
  7  audit: the ops repo holds a plaintext secret, a key or identity, or a SOPS file that does not verify";

/// An error that carries its exit code through `anyhow`, so commands can fail with a specific code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn error(exit: Exit, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure { exit, message: message.into() })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error chain: the first [`Failure`] in it decides, anything else is [`Exit::Error`].
pub fn exit_for(error: &anyhow::Error) -> Exit {
    error.chain().find_map(|e| e.downcast_ref::<Failure>()).map_or(Exit::Error, |f| f.exit)
}
