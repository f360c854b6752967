//! The overlay commands, wired: config → cluster facts → overlay plan → files → ops repo.
//! `render` writes into a working copy; `sync` also commits and pushes (retrying when another sync pushed
//! first); `diff` and `sync --dry-run` only report. Each stage lives in its own module; this one only orders them.
//!
//! Without `--env` they take every environment of the config: all are discovered and planned before anything is
//! written, so one that fails (its cluster unreachable, its Secret unreadable) fails the run with the ops repo
//! untouched; the changed ones become a commit each, pushed together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use serde::Serialize;

use crate::cluster::flux::HelmReleaseApi;
use crate::config::{Environment, Selection};
use crate::exit::{Exit, Failure, exit_for};
use crate::opsrepo::{Access, OpsRepo, Pushed};
use crate::overlay::{self, Change, Existing, Plan, Request};
use crate::{cluster, identity, sops};

/// Attempts at pushing before giving up on a remote that keeps moving.
const PUSH_ATTEMPTS: u32 = 8;

/// Clusters connected, and Traefik Services looked up, at the same time: enough to hide the round trips to
/// many clusters, few enough not to flood one API server that serves many environments.
const DISCOVERIES_AT_ONCE: usize = 8;

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

/// `render`: the overlay of the selected environment, or of every environment of the config, written into the
/// working copy at `root`. Every environment is planned before any file is written.
pub async fn render(root: &Path, inputs: &Inputs) -> Result<Vec<Outcome>> {
    let envs = load_environments(root, inputs)?;
    let identities = identity::load(inputs.identity.as_deref())?;
    let facts = cluster_facts(&envs, &inputs.discovery).await?;
    let plans = every_environment(
        &envs,
        envs.iter().map(|env| plan_in(root, env, &facts[&env.name], &identities, &inputs.rotate)).collect(),
    )?;
    let changed: Vec<(PathBuf, &str)> = envs
        .iter()
        .zip(&plans)
        .filter(|(_, plan)| !plan.is_unchanged())
        .flat_map(|(env, plan)| files(env, plan))
        .collect();
    crate::opsrepo::write_atomically(root, &changed)?;
    Ok(envs
        .iter()
        .zip(&plans)
        .map(|(env, plan)| {
            let mut outcome = outcome(env, &plan.changes, None, None, false);
            outcome.host = Some(facts[&env.name].host.clone());
            outcome
        })
        .collect())
}

/// `sync`, or with `dry_run` (and for `diff`) only the report: the selected environment, or every environment of
/// the config, each changed one a commit of its own, all in one push.
pub async fn sync(remote: &Remote, inputs: &Inputs, dry_run: bool) -> Result<Vec<Outcome>> {
    let started = Instant::now();
    let mut repo = open_repo(remote)?;
    let envs = load_environments(repo.workdir(), inputs)?;
    let identities = identity::load(inputs.identity.as_deref())?;
    tracing::debug!(ms = elapsed_ms(started), environments = envs.len(), "opened the ops repo and its config");
    let facts = cluster_facts(&envs, &inputs.discovery).await?;
    let mut outcomes = publish(&mut repo, &envs, dry_run, |root, env| {
        let plan = plan_in(root, env, &facts[&env.name], &identities, &inputs.rotate)?;
        let files = files(env, &plan).into_iter().map(|(path, text)| (path, text.to_string())).collect();
        Ok(Update { files, changes: plan.changes })
    })
    .await?;
    for outcome in &mut outcomes {
        outcome.host = Some(facts[&outcome.environment].host.clone());
    }
    Ok(outcomes)
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

/// Plans every environment on the repo's work tree, then writes and commits each changed one (a commit per
/// environment, its message naming the change) and pushes them all at once; when another run pushed first,
/// re-plans on the new head and tries again. An environment that cannot be planned fails the run before anything
/// is written. `dry_run` only plans. The one path every command that changes the ops repo takes.
pub(crate) async fn publish(
    repo: &mut OpsRepo,
    envs: &[Environment],
    dry_run: bool,
    plan: impl Fn(&Path, &Environment) -> Result<Update>,
) -> Result<Vec<Outcome>> {
    for attempt in 1..=PUSH_ATTEMPTS {
        let started = Instant::now();
        let updates = every_environment(envs, envs.iter().map(|env| plan(repo.workdir(), env)).collect())?;
        tracing::debug!(ms = elapsed_ms(started), attempt, "planned every environment");
        let started = Instant::now();
        let mut outcomes = Vec::with_capacity(envs.len());
        for (env, update) in envs.iter().zip(&updates) {
            let commit = if dry_run || update.changes.is_empty() { None } else { commit(repo, env, update)? };
            outcomes.push(outcome(env, &update.changes, commit, Some(repo.branch()), false));
        }
        let commits = outcomes.iter().filter(|o| o.commit.is_some()).count();
        tracing::debug!(ms = elapsed_ms(started), commits, "wrote and committed the changed environments");
        if commits == 0 {
            return Ok(outcomes);
        }
        let started = Instant::now();
        match repo.push()? {
            Pushed::Yes => {
                tracing::debug!(ms = elapsed_ms(started), commits, "pushed");
                for outcome in &mut outcomes {
                    outcome.pushed = outcome.commit.is_some();
                }
                return Ok(outcomes);
            }
            Pushed::NoRemote => return Ok(outcomes),
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

/// Writes one environment's files and commits its directory; None when the tree did not change after all.
fn commit(repo: &OpsRepo, env: &Environment, update: &Update) -> Result<Option<String>> {
    let files: Vec<(PathBuf, &str)> = update.files.iter().map(|(p, t)| (p.clone(), t.as_str())).collect();
    repo.write(&files)?;
    repo.commit_if_changed(&env.directory, &overlay::commit_message(&env.name, &update.changes))
}

/// Every environment's result (`results` in the order of `envs`), or one error naming each environment that
/// failed, so that nothing is written for any of them. With a single environment its error is returned as it
/// is. The exit code is the failures' own when they agree (4: each was a discovery timeout), else 1.
fn every_environment<T>(envs: &[Environment], results: Vec<Result<T>>) -> Result<Vec<T>> {
    if envs.len() == 1 {
        return results.into_iter().collect();
    }
    let mut done = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (env, result) in envs.iter().zip(results) {
        match result {
            Ok(value) => done.push(value),
            Err(error) => failed.push((env, error)),
        }
    }
    let Some((_, first)) = failed.first() else { return Ok(done) };
    let exit = exit_for(first);
    let exit = if failed.iter().all(|(_, e)| exit_for(e) == exit) { exit } else { Exit::Error };
    let each: Vec<String> = failed.iter().map(|(env, error)| format!("{}: {error:#}", label(env))).collect();
    Err(Failure::error(
        exit,
        format!(
            "{} of {} environments failed, so none was written or pushed (sync one alone with --env NAME): {}",
            failed.len(),
            envs.len(),
            each.join("; ")
        ),
    ))
}

/// `environment lab (context nkp-lab)`: what an operator needs to find the failing cluster.
fn label(env: &Environment) -> String {
    match &env.context {
        Some(context) => format!("environment {} (context {context})", env.name),
        None => format!("environment {}", env.name),
    }
}

/// The selected environment, or every environment of the config. Flags that describe one cluster or one
/// release are refused when several environments would take them.
fn load_environments(root: &Path, inputs: &Inputs) -> Result<Vec<Environment>> {
    let envs = inputs.environment.load_each(root)?;
    let overrides = &inputs.environment.overrides;
    let one_environment_only = [
        ("--host/DIFY_GITOPS_HOST", inputs.discovery.host.is_some()),
        ("--image-tag/DIFY_GITOPS_IMAGE_TAG", overrides.image_tag.is_some()),
        ("--context", overrides.context.is_some()),
    ];
    let given: Vec<&str> = one_environment_only.iter().filter(|(_, given)| *given).map(|(flag, _)| *flag).collect();
    if envs.len() > 1 && !given.is_empty() {
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        return Err(Failure::error(
            Exit::Usage,
            format!(
                "{} applies to one environment, and the config has {} ({}): add --env NAME, or drop the flag to \
                 sync each environment with its own settings",
                given.join(" and "),
                envs.len(),
                names.join(", ")
            ),
        ));
    }
    for env in &envs {
        warn_about_the_web_image(env);
    }
    Ok(envs)
}

fn elapsed_ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
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
            environment = %env.name,
            "{}: unless the HelmRelease's values set images.web.repository/tag to Dify's web built with \
             NEXT_PUBLIC_BASE_PATH={} (the web-image workflow), Flux's install will fail",
            check.reason,
            env.chart.path
        );
    }
}

/// Each environment's facts, by name. Environments on the same kubeconfig context share one client and one
/// question about Flux's APIs; the Traefik Services are looked up a few at a time. Every environment is
/// discovered before any fails the run, so the error names each one that cannot be reached.
async fn cluster_facts(envs: &[Environment], discovery: &Discovery) -> Result<BTreeMap<String, ClusterFacts>> {
    if let Some(host) = &discovery.host {
        validate_host(host)?;
        let given = |env: &Environment| (env.name.clone(), ClusterFacts { host: host.clone(), helmrelease_api: None });
        return Ok(envs.iter().map(given).collect());
    }
    let started = Instant::now();
    let contexts: BTreeSet<Option<&str>> = envs.iter().map(|env| env.context.as_deref()).collect();
    let clusters: BTreeMap<Option<&str>, Result<Cluster, String>> = stream::iter(contexts)
        .map(|context| async move { (context, Cluster::connect(discovery.kubeconfig.as_deref(), context).await) })
        .buffer_unordered(DISCOVERIES_AT_ONCE)
        .collect()
        .await;
    // One environment shows how long it waits for its address; several would overwrite each other's line.
    let progress = discovery.progress && envs.len() == 1;
    let results: Vec<Result<ClusterFacts>> = stream::iter(envs)
        .map(|env| {
            let cluster = &clusters[&env.context.as_deref()];
            async move {
                let cluster = cluster.as_ref().map_err(|error| anyhow::anyhow!("{error}"))?;
                let found =
                    cluster::traefik::discover(&cluster.client, &env.traefik, discovery.timeout, progress).await?;
                Ok(ClusterFacts { host: found.address, helmrelease_api: cluster.helmrelease_api })
            }
        })
        .buffered(DISCOVERIES_AT_ONCE)
        .collect()
        .await;
    let facts = every_environment(envs, results)?;
    tracing::debug!(ms = elapsed_ms(started), clusters = clusters.len(), "discovered every environment's address");
    Ok(envs.iter().map(|env| env.name.clone()).zip(facts).collect())
}

/// A kubeconfig context's cluster, connected once for all the environments on it.
struct Cluster {
    client: cluster::Client,
    /// The HelmRelease API Flux serves; None on a cluster without Flux.
    helmrelease_api: Option<HelmReleaseApi>,
}

impl Cluster {
    /// The error is text: every environment on the context reports it.
    async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Cluster, String> {
        let client = cluster::connect(kubeconfig, context).await.map_err(|error| format!("{error:#}"))?;
        let helmrelease_api = match cluster::flux::served_helmrelease_api(&client).await {
            Ok(api) => Some(api),
            Err(error) => {
                tracing::debug!("the HelmRelease is left on its API version: {error:#}");
                None
            }
        };
        Ok(Cluster { client, helmrelease_api })
    }
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
