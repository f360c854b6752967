//! The command line: clap definitions only (plain, validated arguments; no I/O).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;

#[derive(Parser, Debug)]
#[command(
    name = "dify-gitops",
    version,
    about = "Run Dify CE on Nutanix Kubernetes Platform the GitOps way",
    long_about = "Preflight an NKP cluster, discover Kommander's Traefik load-balancer address, and keep an \
                  age-encrypted Dify environment overlay in sync in a private ops repo that Flux applies.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Output format of the result on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people: a table or a single value.
    Text,
    /// For CI and scripts: one JSON document.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that the cluster can run Dify behind Kommander's Traefik.
    #[command(after_help = "Examples:\n  \
        dify-gitops preflight\n  \
        dify-gitops preflight --namespace dify --storage-class nutanix-volume --output json\n  \
        dify-gitops preflight --rwx-storage-class nutanix-files\n\n\
        Each check passes, warns or fails with a one-line reason and the fix; the exit code is 0 only when \
        nothing fails (3 otherwise).")]
    Preflight(PreflightArgs),
    /// Find Kommander's Traefik Service and print its load-balancer address, waiting for it if needed.
    #[command(after_help = "Examples:\n  \
        dify-gitops discover\n  \
        dify-gitops discover --traefik-namespace kommander --timeout 2m\n  \
        dify-gitops discover --output json   # {\"namespace\",\"service\",\"address\",\"kind\",\"waited_seconds\"}")]
    Discover(DiscoverArgs),
}

/// Where Kommander's Traefik is. Shared by every command that needs the load-balancer address.
#[derive(Args, Debug, Clone)]
pub struct TraefikArgs {
    /// Name of the Traefik Service.
    #[arg(long, default_value = "kommander-traefik", value_name = "NAME")]
    pub traefik_service: String,
    /// Namespace of the Traefik Service (default: found across namespaces).
    #[arg(long, value_name = "NAMESPACE")]
    pub traefik_namespace: Option<String>,
    /// IngressClass that Traefik serves; Dify's Ingresses use it.
    #[arg(long, default_value = "kommander-traefik", value_name = "NAME")]
    pub ingress_class: String,
}

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub traefik: TraefikArgs,
    /// How long to wait for an address (e.g. 30s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub traefik: TraefikArgs,
    /// Namespace Dify is installed into.
    #[arg(long, short = 'n', default_value = "dify", value_name = "NAMESPACE")]
    pub namespace: String,
    /// StorageClass for Dify's volumes (default: the cluster's default StorageClass).
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// A ReadWriteMany StorageClass for the files volume shared by api and worker, when you plan to use one.
    #[arg(long, value_name = "NAME")]
    pub rwx_storage_class: Option<String>,
}

/// Parses `90`, `90s`, `5m`, `1h`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration: use e.g. 30s, 5m, 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        _ => Err(format!("'{text}' has an unknown unit '{unit}': use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bad_ones_name_the_value() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").unwrap_err().contains("'5 minutes'"));
        assert!(parse_duration("m").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
