//! One function per command: wires the stages together, prints the result; owns no logic of its own.

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, DiscoverArgs, Global, Output, PreflightArgs};
use crate::cluster::{self, preflight, traefik};
use crate::exit::{Exit, Failure};

pub async fn run(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command::Discover(args) => discover(&cli.global, args).await,
        Command::Preflight(args) => preflight(&cli.global, args).await,
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

fn preflight_table(report: &preflight::Report) -> String {
    let width = report.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in &report.checks {
        let status = match check.status {
            preflight::Status::Pass => "PASS",
            preflight::Status::Warn => "WARN",
            preflight::Status::Fail => "FAIL",
            preflight::Status::Skip => "SKIP",
        };
        out.push_str(&format!("{status}  {:<width$}  {}\n", check.name, check.reason));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}
