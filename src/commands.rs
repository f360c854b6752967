//! One function per command: wires the stages together, prints the result; owns no logic of its own.

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, DiscoverArgs, Global, Output, PreflightArgs};
use crate::cluster::{self, preflight, traefik};
use crate::exit::{Exit, Failure};

pub async fn run(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command::Discover(args) => discover(&cli.global, args).await,
        Command::Preflight(args) => preflight(&cli.global, args).await,
        Command::Verify(args) => verify(&cli.global, args).await,
        Command::Render(args) => report(&cli.global, crate::sync::render(&cli.global, args).await?),
        Command::Sync(args) => report(&cli.global, crate::sync::sync(&cli.global, args, args.dry_run).await?),
        Command::Diff(args) => report(&cli.global, crate::sync::sync(&cli.global, args, true).await?),
        Command::Init(args) => init(&cli.global, args).await,
        Command::ShowSecret(args) => {
            println!("{}", crate::sync::show_secret(args)?.as_str());
            Ok(Exit::Ok)
        }
        Command::Audit(args) => audit(&cli.global, args),
    }
}

async fn client(global: &Global) -> Result<kube::Client> {
    cluster::connect(global.kubeconfig.as_deref(), global.context.as_deref()).await
}

async fn discover(global: &Global, args: &DiscoverArgs) -> Result<Exit> {
    let client = client(global).await?;
    let found = traefik::discover(&client, &args.traefik, args.timeout, !global.quiet).await?;
    match global.output {
        Output::Text => println!("{}", found.address),
        Output::Json => println!("{}", serde_json::to_string(&found).context("serialising the result")?),
    }
    Ok(Exit::Ok)
}

async fn preflight(global: &Global, args: &PreflightArgs) -> Result<Exit> {
    let client = client(global).await?;
    let report = preflight::run(&client, args).await;
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?),
        Output::Text => print!("{}", preflight_table(&report)),
    }
    if report.passed {
        Ok(Exit::Ok)
    } else {
        let failed: Vec<&str> =
            report.checks.iter().filter(|c| c.status == preflight::Status::Fail).map(|c| c.name).collect();
        Err(Failure::error(Exit::ChecksFailed, format!("preflight failed: {}", failed.join(", "))))
    }
}

/// Prints an overlay outcome; the exit code says whether anything changed.
fn report(global: &Global, outcome: crate::sync::Outcome) -> Result<Exit> {
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcome).context("serialising the outcome")?),
        Output::Text if !outcome.changed => {
            println!("dify/{}: unchanged (external.host = {})", outcome.environment, outcome.host)
        }
        Output::Text => {
            println!(
                "dify/{}: {} change(s) in {}",
                outcome.environment,
                outcome.changes.len(),
                outcome.directory.display()
            );
            for change in &outcome.changes {
                println!("  {change}");
            }
            match (&outcome.commit, outcome.pushed) {
                (Some(commit), true) => {
                    println!("committed {commit} and pushed to {}", outcome.branch.as_deref().unwrap_or("?"))
                }
                (Some(commit), false) => println!("committed {commit} (no remote to push to)"),
                _ => {}
            }
        }
    }
    Ok(if outcome.changed { Exit::Changed } else { Exit::Ok })
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
        Output::Json => println!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?),
        Output::Text => print!("{}", verify::table(&report)),
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
        Some(api) => api,
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
            println!("{}", serde_json::json!({"environment": args.env, "helmrelease_api": api, "files": paths}));
        }
        Output::Text => {
            println!("wrote the ops repo layout for {} into {}:", args.env, args.repo_dir.display());
            for (path, _) in &files {
                println!("  {}", path.display());
            }
            println!("next: commit, then `dify-gitops sync` writes the overlay; gitops/README.md bootstraps Flux");
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
    let identities = crate::sync::load_identities(args.identity.as_deref())?;
    let options = crate::audit::Options { root: &args.repo_dir, history: args.history, identities: &identities };
    let report = crate::audit::run(&options)?;
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report).context("serialising the report")?),
        Output::Text => print!("{}", crate::audit::table(&report)),
    }
    if report.clean {
        return Ok(Exit::Ok);
    }
    let errors = report.findings.iter().filter(|f| f.severity == crate::audit::Severity::Error).count();
    Err(Failure::error(Exit::AuditFailed, format!("audit found {errors} problem(s) in {}", args.repo_dir.display())))
}
