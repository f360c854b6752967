//! The overlay commands, wired: config → cluster facts → overlay plan → files → ops repo.
//! `render` writes into a working copy; `sync` also commits and pushes (retrying when another sync pushed
//! first); `diff` and `sync --dry-run` only report. Each stage lives in its own module; this one only orders them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cluster::flux::HelmReleaseApi;
use crate::config::{Environment, Selection};
use crate::opsrepo::{Access, OpsRepo, Pushed};
use crate::overlay::{self, Change, Existing, Plan, Request};
use crate::{cluster, identity, sops};

/// Attempts at pushing before giving up on a remote that keeps moving.
const PUSH_ATTEMPTS: u32 = 8;

/// What a command reports (stdout as text or JSON).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub environment: String,
    pub directory: PathBuf,
    /// The address the overlay points at (`sync`, `render`, `diff`; not `secret set`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub changed: bool,
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub pushed: bool,
}

/// What the overlay commands take besides the ops repo: which environment, the operator's identity, what to
/// rotate, and how to find the host.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub environment: Selection,
    /// The operator's age identity file, to carry secrets over and rotate them.
    pub identity: Option<PathBuf>,
    /// Secrets to regenerate, by name.
    pub rotate: Vec<String>,
    pub discovery: Discovery,
}

/// How the host is found: given, or Traefik's load-balancer address discovered on the cluster.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `--host`: no cluster is asked.
    pub host: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config); the context is the environment's.
    pub kubeconfig: Option<PathBuf>,
    /// How long to wait for the address.
    pub timeout: Duration,
    /// Show the wait on stderr.
    pub progress: bool,
}

/// Where the ops repo is and how to reach it (`sync`, `diff`, `secret`).
#[derive(Debug, Clone)]
pub struct Remote {
    /// A working copy (used in place), a bare repo's path, or a file://, https:// or ssh:// URL.
    pub repo: String,
    /// Sent with the HTTPS token.
    pub git_username: Option<String>,
    pub ssh_key: Option<PathBuf>,
    /// Reuse the cached clone (else a temp clone).
    pub reuse_clone: bool,
    /// Commit to and push this branch instead of the remote's default.
    pub branch: Option<String>,
}

pub async fn render(root: &Path, inputs: &Inputs) -> Result<Outcome> {
    let env = inputs.environment.load(root)?;
    warn_about_the_web_image(&env);
    let identities = identity::load(inputs.identity.as_deref())?;
    let facts = cluster_facts(&env, &inputs.discovery).await?;
    let plan = plan_in(root, &env, &facts, &identities, &inputs.rotate)?;
    if !plan.is_unchanged() {
        crate::opsrepo::write_atomically(root, &files(&env, &plan))?;
    }
    let mut outcome = outcome(&env, &plan.changes, None, None, false);
    outcome.host = Some(facts.host);
    Ok(outcome)
}

/// `sync`, or with `dry_run` (and for `diff`) only the report.
pub async fn sync(remote: &Remote, inputs: &Inputs, dry_run: bool) -> Result<Outcome> {
    let mut repo = open_repo(remote)?;
    let env = inputs.environment.load(repo.workdir())?;
    warn_about_the_web_image(&env);
    let identities = identity::load(inputs.identity.as_deref())?;
    let facts = cluster_facts(&env, &inputs.discovery).await?;
    let mut outcome = publish(&mut repo, &env, dry_run, |root| {
        let plan = plan_in(root, &env, &facts, &identities, &inputs.rotate)?;
        let files = files(&env, &plan).into_iter().map(|(path, text)| (path, text.to_string())).collect();
        Ok(Update { files, changes: plan.changes })
    })
    .await?;
    outcome.host = Some(facts.host);
    Ok(outcome)
}

/// Files to write into the ops repo and the changes they make; no change means nothing is written.
pub(crate) struct Update {
    pub files: Vec<(PathBuf, String)>,
    pub changes: Vec<Change>,
}

pub(crate) fn open_repo(remote: &Remote) -> Result<OpsRepo> {
    let access = Access::from_env(remote.git_username.clone(), remote.ssh_key.clone())?;
    OpsRepo::open(&remote.repo, remote.branch.as_deref(), access, remote.reuse_clone)
}

/// Plans on the repo's work tree, writes, commits and pushes; when another run pushed first, re-plans on the new
/// head and tries again. `dry_run` only plans. The one path every command that changes the ops repo takes.
pub(crate) async fn publish(
    repo: &mut OpsRepo,
    env: &Environment,
    dry_run: bool,
    plan: impl Fn(&Path) -> Result<Update>,
) -> Result<Outcome> {
    for attempt in 1..=PUSH_ATTEMPTS {
        let update = plan(repo.workdir())?;
        if dry_run || update.changes.is_empty() {
            return Ok(outcome(env, &update.changes, None, Some(repo.branch()), false));
        }
        let files: Vec<(PathBuf, &str)> = update.files.iter().map(|(p, t)| (p.clone(), t.as_str())).collect();
        repo.write(&files)?;
        let message = overlay::commit_message(&env.name, &update.changes);
        let Some(commit) = repo.commit_if_changed(&env.directory, &message)? else {
            return Ok(outcome(env, &update.changes, None, Some(repo.branch()), false));
        };
        match repo.push()? {
            Pushed::Yes => return Ok(outcome(env, &update.changes, Some(commit), Some(repo.branch()), true)),
            Pushed::NoRemote => return Ok(outcome(env, &update.changes, Some(commit), Some(repo.branch()), false)),
            Pushed::Rejected(reason) => {
                tracing::info!(attempt, %reason, "push rejected: the remote moved on; re-planning on its new head");
                repo.refresh()?;
                // Two syncs started together would otherwise collide again at once.
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
        }
    }
    bail!("gave up after {PUSH_ATTEMPTS} rejected pushes: the ops repo's branch keeps moving; nothing was pushed")
}

/// One secret of the environment's overlay (a generated one, or one added by hand), decrypted (the MAC verified)
/// with the operator's identity.
pub fn show_secret(
    root: &Path,
    selection: &Selection,
    identity: Option<&Path>,
    name: &str,
) -> Result<zeroize::Zeroizing<String>> {
    let env = selection.load(root)?;
    let identities = identity::load(identity)?;
    if identities.is_empty() {
        bail!("reading a secret needs the operator's age identity: set SOPS_AGE_KEY_FILE or pass --identity");
    }
    let path = root.join(&env.directory).join(overlay::SECRETS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `dify-gitops sync` first)", path.display()))?;
    let decrypted = sops::decrypt(&text, &identities).with_context(|| format!("decrypting {}", path.display()))?;
    let string_data = &decrypted.manifest["stringData"];
    let Some(value) = string_data[name].as_str() else {
        let mut have: Vec<&str> = overlay::SECRET_NAMES.to_vec();
        let added = string_data.as_object().into_iter().flat_map(|m| m.keys()).map(String::as_str);
        have.extend(added.filter(|k| !overlay::SECRET_NAMES.contains(k)).collect::<Vec<_>>());
        bail!("no secret named '{name}' in {} (have: {})", path.display(), have.join(", "));
    };
    Ok(zeroize::Zeroizing::new(value.to_string()))
}

/// What the overlay takes from the cluster.
struct ClusterFacts {
    /// Traefik's load-balancer address, or the `--host` given instead.
    host: String,
    /// The HelmRelease API Flux serves; None with `--host` (no cluster asked) or on a cluster without Flux.
    helmrelease_api: Option<HelmReleaseApi>,
}

/// A path no published web image is built for: the overlay is still written (images.web may be set in the
/// HelmRelease's values, which sync does not own), but the operator hears it now, not from a blank page.
fn warn_about_the_web_image(env: &Environment) {
    let check = cluster::preflight::judge_web_image(&env.chart.path, None);
    if check.status == cluster::preflight::Status::Fail {
        tracing::warn!(
            "{}: unless the HelmRelease's values set images.web.repository/tag to Dify's web built with \
             NEXT_PUBLIC_BASE_PATH={} (the web-image workflow), Flux's install will fail",
            check.reason,
            env.chart.path
        );
    }
}

async fn cluster_facts(env: &Environment, discovery: &Discovery) -> Result<ClusterFacts> {
    if let Some(host) = &discovery.host {
        validate_host(host)?;
        return Ok(ClusterFacts { host: host.clone(), helmrelease_api: None });
    }
    let client = cluster::connect(discovery.kubeconfig.as_deref(), env.context.as_deref()).await?;
    let found = cluster::traefik::discover(&client, &env.traefik, discovery.timeout, discovery.progress).await?;
    let helmrelease_api = match cluster::flux::served_helmrelease_api(&client).await {
        Ok(api) => Some(api),
        Err(error) => {
            tracing::debug!("the HelmRelease is left on its API version: {error:#}");
            None
        }
    };
    Ok(ClusterFacts { host: found.address, helmrelease_api })
}

/// A host is a DNS name or an IP: no scheme, path, port or space (it becomes part of every Dify URL).
fn validate_host(host: &str) -> Result<()> {
    let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if valid { Ok(()) } else { bail!("--host '{host}' is not a host name or IP address (no scheme, path or port)") }
}

fn plan_in(
    root: &Path,
    env: &Environment,
    facts: &ClusterFacts,
    identities: &[age::x25519::Identity],
    rotate: &[String],
) -> Result<Plan> {
    let read = |name: &str| crate::opsrepo::read_if_exists(&root.join(&env.directory).join(name));
    let existing = Existing {
        values_file: read(overlay::VALUES_FILE)?,
        secrets_file: read(overlay::SECRETS_FILE)?,
        helmrelease_file: read(overlay::HELMRELEASE_FILE)?,
    };
    let request = Request {
        host: &facts.host,
        identities,
        rotate,
        now: SystemTime::now(),
        served_helmrelease_api: facts.helmrelease_api,
    };
    overlay::plan(env, &existing, &request)
}

fn files<'a>(env: &Environment, plan: &'a Plan) -> Vec<(PathBuf, &'a str)> {
    let mut files = vec![
        (env.directory.join(overlay::VALUES_FILE), plan.values_file.as_str()),
        (env.directory.join(overlay::SECRETS_FILE), plan.secrets_file.as_str()),
    ];
    if let Some(helmrelease) = &plan.helmrelease_file {
        files.push((env.directory.join(overlay::HELMRELEASE_FILE), helmrelease.as_str()));
    }
    files
}

fn outcome(
    env: &Environment,
    changes: &[Change],
    commit: Option<String>,
    branch: Option<&str>,
    pushed: bool,
) -> Outcome {
    Outcome {
        environment: env.name.clone(),
        directory: env.directory.clone(),
        host: None,
        changed: !changes.is_empty(),
        changes: changes.iter().map(Change::to_string).collect(),
        commit,
        branch: branch.map(str::to_string),
        pushed,
    }
}
