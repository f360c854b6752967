//! One function per command: turns the parsed arguments into the plain inputs of `config`, `cluster`, `sync`,
//! `secret`, `init`, `verify`, `audit` and `plugin_bundle` (no module below this one sees a clap type), runs them, prints the result;
//! owns no logic of its own.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::{
    Cli, Command, DiscoverArgs, Global, HelmReleaseApiArg, Output, OverlayArgs, PluginCommand, PreflightArgs,
    RemoteArgs, SecretCommand, SecretEnvArgs, TraefikArgs,
};
use crate::cluster::flux::HelmReleaseApi;
use crate::cluster::traefik::TraefikTarget;
use crate::cluster::{self, preflight, traefik};
use crate::config::{Overrides, Selection};
use crate::exit::{Exit, Failure};

/// `println!` that returns the write error instead of panicking, so a closed pipe (`| head`) ends the command
/// and `main` can treat it as success.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

/// `print!` that returns the write error, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)
    };
}

pub async fn run(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command::Discover(args) => discover(&cli.global, args).await,
        Command::Preflight(args) => preflight(&cli.global, args).await,
        Command::Verify(args) => verify(&cli.global, args).await,
        Command::Render(args) => {
            let inputs = overlay_inputs(&cli.global, &args.overlay);
            report(&cli.global, crate::sync::render(&args.repo_dir, &inputs).await?)
        }
        Command::Sync(args) | Command::Diff(args) => {
            let dry_run = args.dry_run || matches!(cli.command, Command::Diff(_));
            let inputs = overlay_inputs(&cli.global, &args.overlay);
            let remote = remote(&args.remote, args.branch.clone());
            report(&cli.global, crate::sync::sync(&remote, &inputs, dry_run).await?)
        }
        Command::Init(args) => init(&cli.global, args).await,
        Command::ShowSecret(args) => {
            let selection = selection(&args.env, &args.config, Overrides::default());
            let value = crate::sync::show_secret(&args.repo_dir, &selection, args.identity.as_deref(), &args.name)?;
            outln!("{}", value.as_str())?;
            Ok(Exit::Ok)
        }
        Command::Audit(args) => audit(&cli.global, args),
        Command::Secret(args) => match &args.command {
            SecretCommand::Set(args) => {
                let inputs = crate::secret::SetInputs {
                    name: args.name.clone(),
                    value_on_command_line: args.value_on_command_line.is_some(),
                    from_file: args.from_file.clone(),
                    force: args.force.clone(),
                    identity: args.identity.clone(),
                    dry_run: args.dry_run,
                };
                let (remote, selection) = secret_target(&args.target, args.branch.clone());
                report(&cli.global, vec![crate::secret::set(&remote, &selection, &inputs).await?])
            }
            SecretCommand::List(args) => secret_list(&cli.global, &args.target),
        },
        Command::Plugin(args) => match &args.command {
            PluginCommand::Bundle(args) => plugin_bundle(&cli.global, args),
        },
    }
}

/// The environment the flags select, with the flags that win over the config file.
fn selection(env: &Option<String>, config: &std::path::Path, overrides: Overrides) -> Selection {
    Selection { name: env.clone(), file: config.to_path_buf(), overrides }
}

fn overlay_inputs(global: &Global, args: &OverlayArgs) -> crate::sync::Inputs {
    let overrides = Overrides {
        image_tag: args.image_tag.clone(),
        recipients: args.recipients.clone(),
        context: global.context.clone(),
    };
    crate::sync::Inputs {
        environment: selection(&args.env, &args.config, overrides),
        identity: args.identity.clone(),
        rotate: args.rotate.clone(),
        discovery: crate::sync::Discovery {
            host: args.host.clone(),
            kubeconfig: global.kubeconfig.clone(),
            timeout: args.timeout,
            progress: !global.quiet,
        },
    }
}

fn remote(args: &RemoteArgs, branch: Option<String>) -> crate::sync::Remote {
    crate::sync::Remote {
        repo: args.repo.clone(),
        git_username: args.git_username.clone(),
        ssh_key: args.ssh_key.clone(),
        reuse_clone: !args.no_cache,
        branch,
    }
}

fn secret_target(args: &SecretEnvArgs, branch: Option<String>) -> (crate::sync::Remote, Selection) {
    (remote(&args.remote, branch), selection(&args.env, &args.config, Overrides::default()))
}

fn traefik_target(args: &TraefikArgs) -> TraefikTarget {
    TraefikTarget { service: args.traefik_service.clone(), namespace: args.traefik_namespace.clone() }
}

async fn client(global: &Global) -> Result<cluster::Client> {
    cluster::connect(global.kubeconfig.as_deref(), global.context.as_deref()).await
}

async fn discover(global: &Global, args: &DiscoverArgs) -> Result<Exit> {
    let client = client(global).await?;
    let found = traefik::discover(&client, &traefik_target(&args.traefik), args.timeout, !global.quiet).await?;
    match global.output {
        Output::Text => outln!("{}", found.address)?,
        Output::Json => outln!("{}", serde_json::to_string(&found).context("serialising the result")?)?,
    }
    Ok(Exit::Ok)
}

async fn preflight(global: &Global, args: &PreflightArgs) -> Result<Exit> {
    let client = client(global).await?;
    let inputs = preflight::Inputs {
        traefik: traefik_target(&args.traefik),
        ingress_class: args.traefik.ingress_class.clone(),
        namespace: args.namespace.clone(),
        storage_class: args.storage_class.clone(),
        rwx_storage_class: args.rwx_storage_class.clone(),
        path: args.path.clone(),
        web_image: args.web_image.clone(),
        dify_version: args.dify_version,
    };
    let report = preflight::run(&client, &inputs).await;
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?)?,
        Output::Text => out!("{}", preflight_table(&report))?,
    }
    if report.passed {
        Ok(Exit::Ok)
    } else {
        let failed: Vec<&str> =
            report.checks.iter().filter(|c| c.status == preflight::Status::Fail).map(|c| c.name).collect();
        Err(Failure::error(Exit::ChecksFailed, format!("preflight failed: {}", failed.join(", "))))
    }
}

/// Prints the outcome of each environment; the exit code says whether anything changed in any of them. One
/// environment is one JSON object, as it always was; several are `{"changed", "environments": [...]}`.
fn report(global: &Global, outcomes: Vec<crate::sync::Outcome>) -> Result<Exit> {
    let changed = outcomes.iter().any(|o| o.changed);
    match global.output {
        Output::Json if outcomes.len() == 1 => {
            outln!("{}", serde_json::to_string_pretty(&outcomes[0]).context("serialising the outcome")?)?
        }
        Output::Json => {
            let report = serde_json::json!({"changed": changed, "environments": outcomes});
            outln!("{}", serde_json::to_string_pretty(&report).context("serialising the outcome")?)?
        }
        Output::Text => {
            for outcome in &outcomes {
                out!("{}", outcome_text(outcome))?;
            }
        }
    }
    Ok(if changed { Exit::Changed } else { Exit::Ok })
}

/// One environment's lines: unchanged, or its changes and the commit that holds them.
fn outcome_text(outcome: &crate::sync::Outcome) -> String {
    let env = &outcome.environment;
    if !outcome.changed {
        return match &outcome.host {
            Some(host) => format!("dify/{env}: unchanged (external.host = {host})\n"),
            None => format!("dify/{env}: unchanged\n"),
        };
    }
    let mut text = format!("dify/{env}: {} change(s) in {}\n", outcome.changes.len(), outcome.directory.display());
    for change in &outcome.changes {
        text.push_str(&format!("  {change}\n"));
    }
    match (&outcome.commit, outcome.pushed) {
        (Some(commit), true) => {
            text.push_str(&format!("committed {commit} and pushed to {}\n", outcome.branch.as_deref().unwrap_or("?")))
        }
        (Some(commit), false) => text.push_str(&format!("committed {commit} (no remote to push to)\n")),
        _ => {}
    }
    text
}

/// `secret list`: key names only, and whether sync generates each.
fn secret_list(global: &Global, args: &SecretEnvArgs) -> Result<Exit> {
    let (remote, selection) = secret_target(args, None);
    let listing = crate::secret::list(&remote, &selection)?;
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&listing).context("serialising the list")?)?,
        Output::Text => {
            for secret in &listing.secrets {
                let owner = if secret.generated { "generated by sync" } else { "added (kept by sync)" };
                outln!("{:<28} {owner}", secret.name)?;
            }
        }
    }
    Ok(Exit::Ok)
}

async fn verify(global: &Global, args: &crate::cli::VerifyArgs) -> Result<Exit> {
    use crate::verify::{self, Trust};
    let target = verify::Target::parse(&args.url)?;
    let trust = match (&args.ca_file, args.insecure) {
        (Some(file), _) => Trust::CaFile(file.clone()),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    let report = verify::run(&target, &verify::Prober::new(&trust, args.timeout)?).await;
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?)?,
        Output::Text => out!("{}", verify::table(&report))?,
    }
    if report.passed {
        return Ok(Exit::Ok);
    }
    let failed: Vec<&str> = report.checks.iter().filter(|c| c.status == verify::Status::Fail).map(|c| c.name).collect();
    Err(Failure::error(Exit::VerifyFailed, format!("verify failed: {}", failed.join(", "))))
}

async fn init(global: &Global, args: &crate::cli::InitArgs) -> Result<Exit> {
    let recipients = crate::sops::Recipients::parse(args.recipients.iter()).context("--recipient")?;
    let api = match args.helmrelease_api {
        Some(HelmReleaseApiArg::V2) => HelmReleaseApi::V2,
        Some(HelmReleaseApiArg::V2beta2) => HelmReleaseApi::V2beta2,
        None => crate::cluster::flux::served_helmrelease_api(&client(global).await?).await?,
    };
    let params = crate::init::Params {
        env: &args.env,
        namespace: &args.namespace,
        image_tag: &args.image_tag,
        recipients: &recipients,
        chart_git_url: &args.chart_git_url,
        chart_git_branch: &args.chart_git_branch,
        helmrelease_api: api,
    };
    let files = crate::init::files(&params)?;
    crate::init::write(&args.repo_dir, &files, args.force)?;
    match global.output {
        Output::Json => {
            let paths: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
            outln!("{}", serde_json::json!({"environment": args.env, "helmrelease_api": api, "files": paths}))?;
        }
        Output::Text => {
            outln!("wrote the ops repo layout for {} into {}:", args.env, args.repo_dir.display())?;
            for (path, _) in &files {
                outln!("  {}", path.display())?;
            }
            outln!("next: commit, then `dify-gitops sync` writes the overlay; gitops/README.md bootstraps Flux")?;
        }
    }
    Ok(Exit::Ok)
}

fn preflight_table(report: &preflight::Report) -> String {
    crate::report::table(report.checks.iter().map(|c| crate::report::Row {
        status: c.status,
        name: c.name,
        reason: c.reason.clone(),
        fix: c.fix.as_deref(),
    }))
}

/// `audit`: scans the ops repo; exit 7 when it holds a problem.
fn audit(global: &Global, args: &crate::cli::AuditArgs) -> Result<Exit> {
    let identities = crate::identity::load(args.identity.as_deref())?;
    let options = crate::audit::Options { root: &args.repo_dir, history: args.history, identities: &identities };
    let report = crate::audit::run(&options)?;
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?)?,
        Output::Text => out!("{}", crate::audit::table(&report))?,
    }
    if report.clean {
        return Ok(Exit::Ok);
    }
    let errors = report.findings.iter().filter(|f| f.severity == crate::audit::Severity::Error).count();
    Err(Failure::error(Exit::AuditFailed, format!("audit found {errors} problem(s) in {}", args.repo_dir.display())))
}

/// `plugin bundle`: the offline bundle of a plugin package; the figures on stdout, warnings on stderr.
fn plugin_bundle(global: &Global, args: &crate::cli::PluginBundleArgs) -> Result<Exit> {
    let inputs = crate::plugin_bundle::Inputs {
        input: args.input.clone(),
        output: args.out.clone(),
        platform: args.platform.clone(),
        python: args.python.clone(),
        index_url: args.index_url.clone(),
        uv: args.uv.clone(),
    };
    let report = crate::plugin_bundle::bundle(&inputs)?;
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?)?,
        Output::Text => {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            outln!(
                "wrote {} ({:.1} MiB, {:.1} MiB unpacked; the package was {:.1} MiB): {} wheels for {} CPython {}, \
                 pinned from {}, in {:.1} s",
                report.output.display(),
                mib(report.output_bytes),
                mib(report.uncompressed_bytes),
                mib(report.input_bytes),
                report.wheels,
                report.platform,
                report.python,
                report.pins_from,
                report.seconds
            )?;
            if !report.removed.is_empty() {
                outln!("removed: {} (the daemon installs from requirements.txt instead)", report.removed.join(", "))?;
            }
            outln!("unsigned: install with pluginDaemon.forceVerifyingSignature=false, or re-sign it")?;
        }
    }
    Ok(Exit::Ok)
}
