//! The command line: clap definitions only (plain, validated arguments; no I/O).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;

#[derive(Parser, Debug)]
#[command(
    name = "dify-gitops",
    version = env!("DIFY_GITOPS_VERSION"),
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
    /// Probe a live install through Traefik: web under its path, console API, service API, plugin hooks.
    #[command(after_help = "Examples:\n  \
        dify-gitops verify --url https://192.0.2.10/dify --ca-file kommander-ca.crt\n  \
        dify-gitops verify --url https://192.0.2.10/dify --insecure --output json\n  \
        dify-gitops verify --url http://192.0.2.20 --timeout 30s     # served at the root path\n\n\
        Checks: web (the page under the path loads its /_next/ assets from under the path: a stock web image \
        under a sub-path fails here, fixed by building it with NEXT_PUBLIC_BASE_PATH), web-assets, console-api \
        (<path>/console/api/setup answers JSON from api), service-api (<path>/v1 reaches api; 401 is fine), \
        plugin-hook (<path>/e/<id>/ reaches the plugin daemon), websocket (<path>/socket.io/ reaches \
        api-websocket; skipped when collaboration is off). Exit code 0 when nothing fails, 5 otherwise.")]
    Verify(VerifyArgs),
    /// Write the environment overlay (values ConfigMap + SOPS-encrypted Secret) into a local ops repo checkout.
    #[command(after_help = "Examples:\n  \
        dify-gitops render --env prod                      # in the ops repo's working copy\n  \
        dify-gitops render --repo-dir ~/ops --host 192.0.2.10\n  \
        SOPS_AGE_KEY_FILE=~/.config/sops/age/keys.txt dify-gitops render --rotate redis-password\n\n\
        Without --env, every environment of the config is rendered; none is written unless all can be.\n\n\
        Exit codes: 0 nothing changed, 6 files changed, 1 error.")]
    Render(RenderArgs),
    /// Discover, render, encrypt, commit and push the environment overlay; commits only when something changed.
    #[command(after_help = "Examples:\n  \
        dify-gitops sync --repo file:///srv/git/ops.git --env prod\n  \
        dify-gitops sync --repo . --env prod               # a working copy: commit, push to its origin\n  \
        dify-gitops sync --repo /srv/git/ops.git --branch dify-update   # a review branch for a pull request\n  \
        DIFY_GITOPS_GIT_TOKEN=... dify-gitops sync --repo https://github.com/acme/ops.git --env prod\n  \
        dify-gitops sync --repo git@gitlab.example.com:platform/ops.git --ssh-key ~/.ssh/dify-deploy\n  \
        dify-gitops sync --dry-run                         # print what would change, secrets redacted\n  \
        dify-gitops sync --repo /srv/git/ops.git           # every environment of the config\n\n\
        Without --env, sync takes every environment of the config: each is discovered on its own kubeconfig \
        context and planned before anything is written; each changed one becomes a commit of its own, and all go \
        in one push. If one environment fails (its cluster unreachable, its Secret unreadable), the run fails \
        naming each failed environment and pushes nothing. --host, --image-tag and --context describe one \
        environment: with several they need --env (exit 2).\n\n\
        A remote is cloned once into ~/.cache/dify-gitops/ops-repos and fetched afterwards (--no-cache: a temp \
        clone). HTTPS trusts the system's CAs or GIT_SSL_CAINFO, and takes a proxy from HTTPS_PROXY/ALL_PROXY \
        (NO_PROXY honoured); SSH checks the host key against ~/.ssh/known_hosts.\n\n\
        sync owns only what it generates: keys, labels and annotations added to the Secret by hand (`secret set`, \
        `sops set`, `sops edit`) are carried through re-encryption and named in the change list. Without an \
        identity the Secret is never re-encrypted: a change that needs it fails (exit 1) rather than drop a key.\n\n\
        Exit codes: 0 nothing changed, 6 a change was committed (and pushed), 1 error; with several \
        environments, 6 when any changed, and a failure's own code (4: no load-balancer address) when every \
        failed environment has it, else 1.")]
    Sync(SyncArgs),
    /// Print what `sync` would change in the ops repo (secrets redacted); changes nothing.
    #[command(after_help = "Examples:\n  \
        dify-gitops diff --repo file:///srv/git/ops.git --env prod\n  \
        dify-gitops diff --host 192.0.2.10 --output json\n\n\
        Without --env, every environment of the config is compared (JSON: {\"changed\",\"environments\":[…]}).\n\n\
        Exit codes: 0 no difference, 6 differences, 1 error.")]
    Diff(SyncArgs),
    /// Lay out a new ops repo for an environment: config, Flux Kustomization, HelmRelease, chart source, workflows.
    #[command(after_help = "Examples:\n  \
        dify-gitops init --env prod --image-tag 1.13.3 --recipient age1...     # asks the cluster for the HelmRelease API\n  \
        dify-gitops init --repo-dir ~/ops --env lab --image-tag 1.17.1 --recipient age1... --helmrelease-api v2beta2\n\n\
        Then: `dify-gitops sync --repo <ops repo>` writes the overlay; gitops/README.md bootstraps Flux.")]
    Init(InitArgs),
    /// Print one secret of the overlay, decrypted with your age identity (e.g. the init password that Dify's
    /// first-admin setup page asks for). Secrets are printed only by this command, only when named.
    #[command(after_help = "Examples:\n  \
        SOPS_AGE_KEY_FILE=~/.config/sops/age/keys.txt dify-gitops show-secret init-password --env prod\n  \
        dify-gitops show-secret init-password --repo-dir ~/ops --identity ~/age.key")]
    ShowSecret(ShowSecretArgs),
    /// Scan an ops repo for plaintext Secrets, passwords and keys in ConfigMaps or values, committed age identities
    /// or private keys, and SOPS files whose MAC does not verify.
    #[command(after_help = "Examples:\n  \
        dify-gitops audit                                  # the working copy in the current directory\n  \
        dify-gitops audit --repo-dir ~/ops --history       # also every commit reachable from HEAD\n  \
        dify-gitops audit --identity ~/.config/sops/age/keys.txt   # also verify each SOPS file's MAC\n  \
        dify-gitops audit --output json                    # {\"clean\",\"files\",\"commits\",\"findings\":[…]}\n\n\
        Finds: a Secret (kind: Secret, in any *.yaml/*.yml, multi-document) that is not SOPS-encrypted; a value \
        under a password/secret/token/apiKey/privateKey key in a ConfigMap, manifest or values file (references \
        such as existingSecret, secretKeyRef and ${VAR} are fine); an OpenAI-style key (sk-…), an age identity \
        (AGE-SECRET-KEY-1…) or a PEM private key in any file; with --identity, a SOPS file that does not decrypt \
        or whose MAC does not verify. Each finding names the file and line (history: commit and path), the key \
        and the fix; the value itself is never printed. Files ignored by git are skipped.\n\n\
        Exit codes: 0 clean (warnings allowed), 7 problems found, 1 error.")]
    Audit(AuditArgs),
    /// Add a key to the environment's SOPS-encrypted Secret (`secret set NAME`, value on stdin), or list its keys.
    Secret(SecretArgs),
    /// Dify plugin packages: `plugin bundle` makes one that installs without PyPI (for an air-gapped cluster).
    Plugin(PluginArgs),
}

#[derive(Args, Debug)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Turn a plugin package (.difypkg) into an offline bundle: its Python dependencies as wheels inside, and a
    /// requirements.txt that makes the plugin daemon install from them alone.
    #[command(after_help = "Examples:\n  \
        dify-gitops plugin bundle openai_api_compatible.difypkg -o openai_api_compatible-offline.difypkg\n  \
        dify-gitops plugin bundle my.difypkg -o my-offline.difypkg --index-url https://nexus.example.com/pypi/simple\n  \
        dify-gitops plugin bundle my.difypkg -o my-arm.difypkg --platform manylinux_2_28_aarch64 --output json\n\n\
        Run it on a connected machine: it needs uv (on PATH, or --uv), which resolves the package's pins (its uv.lock, \
        else its requirements.txt) for the target and runs pip to download the wheels, both from PyPI or \
        --index-url; TLS trusts the system's CAs. The bundle drops pyproject.toml and uv.lock (the daemon would run \
        `uv sync` from them), pins every dependency with its hashes in requirements.txt after `--no-index \
        --find-links ./wheels`, and is unsigned: install it with pluginDaemon.forceVerifyingSignature=false, or \
        re-sign it. The output is written whole or not at all.\n\n\
        Exit codes: 0 written, 1 error (the message names the package, the step and the fix).")]
    Bundle(PluginBundleArgs),
}

#[derive(Args, Debug)]
pub struct PluginBundleArgs {
    /// The plugin package to bundle.
    #[arg(value_name = "IN.difypkg")]
    pub input: PathBuf,
    /// Where to write the bundle (replaced if it exists).
    #[arg(long = "out", short = 'o', value_name = "OUT.difypkg")]
    pub out: PathBuf,
    /// The target's manylinux platform tag; older glibc tags are accepted too. Default: the daemon image's
    /// (Ubuntu 24.04, glibc 2.39, x86-64).
    #[arg(long, default_value = "manylinux_2_39_x86_64", value_name = "TAG")]
    pub platform: String,
    /// The target's Python (major.minor): the daemon makes plugins' virtualenvs with 3.12.
    #[arg(long, default_value = "3.12", value_name = "X.Y")]
    pub python: String,
    /// A PyPI-compatible simple index (a mirror) to resolve and download from, instead of PyPI.
    #[arg(long, value_name = "URL")]
    pub index_url: Option<String>,
    /// The uv program.
    #[arg(long, env = "DIFY_GITOPS_UV", default_value = "uv", value_name = "PROGRAM")]
    pub uv: PathBuf,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Root of the ops repo: a working copy (its files), or a bare repository (its HEAD).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_dir: PathBuf,
    /// Also scan every commit reachable from HEAD: what was committed and later deleted is still readable there.
    #[arg(long)]
    pub history: bool,
    /// An age identity file: verify the MAC of every SOPS file encrypted for it.
    #[arg(long, env = "SOPS_AGE_KEY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

/// What every overlay command needs: which environment, and the inputs that are not in the config file.
#[derive(Args, Debug, Clone)]
pub struct OverlayArgs {
    /// Environment of the config file (default: every environment of the config, each its own commit, one push).
    #[arg(long, short = 'e', env = "DIFY_GITOPS_ENV", value_name = "NAME")]
    pub env: Option<String>,
    /// Config file, relative to the ops repo root unless absolute.
    #[arg(long, default_value = "dify-gitops.yaml", value_name = "FILE")]
    pub config: PathBuf,
    /// Use this host instead of discovering Traefik's load-balancer address.
    #[arg(long, env = "DIFY_GITOPS_HOST", value_name = "HOST")]
    pub host: Option<String>,
    /// The operator's age identity file, to carry secrets over and rotate them.
    #[arg(long, env = "SOPS_AGE_KEY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Regenerate this secret (repeatable), e.g. redis-password.
    #[arg(long, value_name = "NAME")]
    pub rotate: Vec<String>,
    /// Dify release to run (overrides imageTag of the config).
    #[arg(long, env = "DIFY_GITOPS_IMAGE_TAG", value_name = "TAG")]
    pub image_tag: Option<String>,
    /// Age recipient that may decrypt the Secret (repeatable; replaces the config's list).
    #[arg(long = "recipient", value_name = "AGE1...")]
    pub recipients: Vec<String>,
    /// How long discovery waits for the load-balancer address.
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub overlay: OverlayArgs,
    /// Root of the ops repo's working copy.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Root of the new ops repo's working copy.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_dir: PathBuf,
    /// Environment name (a DNS label): clusters/<env>/ and apps/<env>/dify/.
    #[arg(long, short = 'e', value_name = "NAME")]
    pub env: String,
    /// Namespace Dify runs in.
    #[arg(long, short = 'n', default_value = "dify", value_name = "NAMESPACE")]
    pub namespace: String,
    /// Dify release to run.
    #[arg(long, value_name = "TAG")]
    pub image_tag: String,
    /// Age recipient (public key) that may decrypt the overlay's Secret (repeatable; at least one).
    #[arg(long = "recipient", required = true, value_name = "AGE1...")]
    pub recipients: Vec<String>,
    /// Git repository Flux takes chart/dify from.
    #[arg(long, default_value = "https://github.com/dify-gitops/dify-gitops", value_name = "URL")]
    pub chart_git_url: String,
    /// Branch of that repository.
    #[arg(long, default_value = "main", value_name = "BRANCH")]
    pub chart_git_branch: String,
    /// HelmRelease API to write (default: the one the cluster serves: v2 from Flux 2.3, v2beta2 on Flux 2.2).
    #[arg(long, value_enum, value_name = "VERSION")]
    pub helmrelease_api: Option<HelmReleaseApiArg>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `--helmrelease-api`: the HelmRelease API version `init` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HelmReleaseApiArg {
    V2,
    V2beta2,
}

#[derive(Args, Debug)]
pub struct ShowSecretArgs {
    /// The secret's name in the overlay, e.g. init-password.
    pub name: String,
    /// Environment of the config file (default: the only one).
    #[arg(long, short = 'e', env = "DIFY_GITOPS_ENV", value_name = "NAME")]
    pub env: Option<String>,
    /// Config file, relative to the ops repo root unless absolute.
    #[arg(long, default_value = "dify-gitops.yaml", value_name = "FILE")]
    pub config: PathBuf,
    /// Root of the ops repo's working copy.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_dir: PathBuf,
    /// The operator's age identity file.
    #[arg(long, env = "SOPS_AGE_KEY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub overlay: OverlayArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Push to this branch (e.g. for a pull request) instead of the default branch.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Print what would change, secrets redacted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where the ops repo is and how to reach it: shared by `sync`, `diff` and `secret`.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The ops repo: a working copy (used in place) or a remote, cloned: a bare repo's path, file://, https://
    /// (token in $DIFY_GITOPS_GIT_TOKEN) or ssh:// / git@host:path (host key in ~/.ssh/known_hosts).
    #[arg(long, default_value = ".", env = "DIFY_GITOPS_REPO", value_name = "URL|PATH")]
    pub repo: String,
    /// User name sent with the HTTPS token (default: the URL's, else x-access-token).
    #[arg(long, env = "DIFY_GITOPS_GIT_USERNAME", value_name = "NAME")]
    pub git_username: Option<String>,
    /// Private SSH key for an ssh:// remote (default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
    #[arg(long, env = "DIFY_GITOPS_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Clone the remote afresh into a temp dir instead of reusing the cached clone under ~/.cache/dify-gitops.
    #[arg(long, env = "DIFY_GITOPS_NO_CACHE")]
    pub no_cache: bool,
}

#[derive(Args, Debug)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Add or replace a key of the environment's Secret; the value is read from stdin or --from-file, never from
    /// the command line or the environment.
    #[command(after_help = "Examples:\n  \
        pass show openai/dify | dify-gitops secret set openai-api-key --repo /srv/git/ops.git --env prod\n  \
        dify-gitops secret set smtp-password --from-file ./smtp.txt --repo . --branch dify-secrets\n  \
        dify-gitops secret set dify-secret-key --from-file old-key.txt --force \"SECRET_KEY of the install we migrate\"\n\n\
        Needs the operator's age identity (SOPS_AGE_KEY_FILE or --identity): the Secret is decrypted, the key set, \
        and the Secret re-encrypted for the config's recipients; every other key is kept. One trailing newline of \
        the value is dropped. Keys sync generates (dify-secret-key, postgres-password, ...) are refused unless \
        --force gives the reason, which goes into the commit message; `sync --rotate NAME` regenerates them. \
        Commits and pushes like sync (--branch, --dry-run).\n\n\
        Exit codes: 0 the key already held that value, 6 a change was committed (and pushed), 1 error.")]
    Set(SecretSetArgs),
    /// List the keys of the environment's Secret, names only, and whether sync generates them; needs no identity.
    #[command(after_help = "Examples:\n  \
        dify-gitops secret list --repo /srv/git/ops.git --env prod\n  \
        dify-gitops secret list --output json     # {\"environment\",\"secrets\":[{\"name\",\"generated\"}]}")]
    List(SecretListArgs),
}

/// Which environment's Secret, for the `secret` commands.
#[derive(Args, Debug, Clone)]
pub struct SecretEnvArgs {
    /// Environment of the config file (default: the only one).
    #[arg(long, short = 'e', env = "DIFY_GITOPS_ENV", value_name = "NAME")]
    pub env: Option<String>,
    /// Config file, relative to the ops repo root unless absolute.
    #[arg(long, default_value = "dify-gitops.yaml", value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct SecretSetArgs {
    /// The key in the Secret's stringData, e.g. openai-api-key.
    pub name: String,
    /// Never the value: refused, because a value on the command line stays in shell history and `ps`.
    #[arg(hide = true, value_name = "VALUE")]
    pub value_on_command_line: Option<String>,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Set a key that sync generates, for this reason (recorded in the commit message).
    #[arg(long, value_name = "REASON")]
    pub force: Option<String>,
    #[command(flatten)]
    pub target: SecretEnvArgs,
    /// The operator's age identity file, to decrypt and re-encrypt the Secret.
    #[arg(long, env = "SOPS_AGE_KEY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Push to this branch (e.g. for a pull request) instead of the default branch.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct SecretListArgs {
    #[command(flatten)]
    pub target: SecretEnvArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Where Dify is served: scheme, Traefik's address and the path, e.g. https://192.0.2.10/dify.
    #[arg(long, env = "DIFY_GITOPS_URL", value_name = "URL")]
    pub url: String,
    /// Accept any server certificate (NKP's Traefik serves one signed by its own kommander-ca).
    #[arg(long, short = 'k', conflicts_with = "ca_file")]
    pub insecure: bool,
    /// Trust only the CA certificate(s) in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// How long each request may take (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
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
    /// The path Dify will be served under (the chart's expose.path).
    #[arg(long, default_value = "/dify", value_name = "PATH")]
    pub path: String,
    /// The web image you will set in images.web (REPOSITORY:TAG), when the path is neither / nor /dify.
    #[arg(long, value_name = "IMAGE")]
    pub web_image: Option<String>,
    /// The Dify version you will install (images.dify.tag, e.g. 1.13.3): the capacity check counts the components
    /// the chart renders for it (api-websocket from 1.14). Default: the newest, which counts every component.
    #[arg(long, value_name = "VERSION", value_parser = parse_dify_version)]
    pub dify_version: Option<(u32, u32)>,
}

/// Parses a Dify version, `1.13` or `1.13.3` (a `v` prefix is accepted), into (major, minor).
pub fn parse_dify_version(text: &str) -> Result<(u32, u32), String> {
    let refuse = || format!("'{text}' is not a Dify version: use MAJOR.MINOR[.PATCH], e.g. 1.13.3");
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(refuse)?;
    let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(refuse)?;
    match (parts.next(), parts.next()) {
        (None, _) => Ok((major, minor)),
        (Some(patch), None) if patch.parse::<u32>().is_ok() => Ok((major, minor)),
        _ => Err(refuse()),
    }
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
    fn dify_versions_parse_to_major_and_minor_and_bad_ones_name_the_value() {
        assert_eq!(parse_dify_version("1.13.3"), Ok((1, 13)));
        assert_eq!(parse_dify_version("v1.14"), Ok((1, 14)));
        assert_eq!(parse_dify_version("0.15.3"), Ok((0, 15)));
        for bad in ["1", "1.x", "1.13.3-fix", "1.13.3.4", "latest", ""] {
            let error = parse_dify_version(bad).unwrap_err();
            assert!(error.contains(&format!("'{bad}'")) && error.contains("e.g. 1.13.3"), "{error}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
