//! The ops-repo config file (`dify-gitops.yaml`): environments, each with where its cluster is, the non-secret
//! chart values and the age recipients. Loaded, validated and merged with flags into an [`Environment`] that
//! cannot hold a bad value.
//!
//! ```yaml
//! environments:
//!   prod:
//!     context: nkp-prod               # kubeconfig context (default: the current one)
//!     namespace: dify                 # where Dify runs (default: dify)
//!     traefik: {service: kommander-traefik, namespace: kon-workspace-x}   # namespace optional
//!     ingressClass: kommander-traefik # the defaults are NKP's
//!     path: /dify
//!     scheme: https
//!     storageClass: nutanix-volume
//!     imageRepository: langgenius/dify
//!     imageTag: 1.13.3                # required
//!     recipients: [age1...]           # required: who can decrypt the overlay's Secret
//!     directory: apps/prod/dify       # default: apps/<env>/dify (never under clusters/: see gitops/README.md)
//!     plugins: {marketplace: false}   # optional: plugins, egress and bootstrap (see chart_values)
//! ```

mod chart_values;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::cluster::traefik::TraefikTarget;
use crate::sops::Recipients;

pub const CONFIG_FILE: &str = "dify-gitops.yaml";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    environments: BTreeMap<String, EnvironmentFile>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvironmentFile {
    context: Option<String>,
    namespace: Option<String>,
    traefik: Option<TraefikFile>,
    ingress_class: Option<String>,
    path: Option<String>,
    scheme: Option<String>,
    storage_class: Option<String>,
    image_repository: Option<String>,
    image_tag: Option<String>,
    #[serde(default)]
    recipients: Vec<String>,
    directory: Option<String>,
    plugins: Option<chart_values::PluginsFile>,
    egress: Option<chart_values::EgressFile>,
    bootstrap: Option<chart_values::BootstrapFile>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct TraefikFile {
    service: Option<String>,
    namespace: Option<String>,
}

/// How browsers reach Dify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The non-secret chart values an environment sets (the host comes from discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSettings {
    pub ingress_class: String,
    /// "/" or "/segment[/segment]" without a trailing slash.
    pub path: String,
    pub scheme: Scheme,
    pub storage_class: String,
    pub image_repository: String,
    pub image_tag: String,
    /// What the `plugins`, `egress` and `bootstrap` tables set, by dotted chart key, typed as the chart's schema
    /// wants them (booleans, integers, lists); empty when the environment has none of them.
    pub values: BTreeMap<String, Value>,
}

/// One environment, validated and merged with the command line.
#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub context: Option<String>,
    pub namespace: String,
    pub traefik: TraefikTarget,
    pub chart: ChartSettings,
    pub recipients: Recipients,
    /// Relative to the ops repo root, inside it.
    pub directory: PathBuf,
}

/// Command-line values that win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub image_tag: Option<String>,
    pub recipients: Vec<String>,
    /// `--context`: the kubeconfig context, over the environment's `context`.
    pub context: Option<String>,
}

/// Which environment of which config file, with the command line's overrides: what every overlay command loads.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// The environment's name; None: the only one.
    pub name: Option<String>,
    /// The config file, relative to the ops repo root unless absolute.
    pub file: PathBuf,
    pub overrides: Overrides,
}

impl Selection {
    /// Loads the selected environment from the config file of the ops repo at `root`.
    pub fn load(&self, root: &Path) -> Result<Environment> {
        load(&self.path_in(root), self.name.as_deref(), &self.overrides)
    }

    /// Loads the selected environment, or every environment of the file when none is named (`sync`, `diff`,
    /// `render`), in name order.
    pub fn load_each(&self, root: &Path) -> Result<Vec<Environment>> {
        let file = self.path_in(root);
        parse_each(&read(&file)?, &file, self.name.as_deref(), &self.overrides)
    }

    fn path_in(&self, root: &Path) -> PathBuf {
        if self.file.is_absolute() { self.file.clone() } else { root.join(&self.file) }
    }
}

/// Loads `file` and resolves environment `name` (or the only one, when `name` is None).
pub fn load(file: &Path, name: Option<&str>, overrides: &Overrides) -> Result<Environment> {
    parse(&read(file)?, file, name, overrides)
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| {
        format!("cannot read config {}: create it (see `dify-gitops init --help`) or pass --config", file.display())
    })
}

fn parse_file(text: &str, file: &Path) -> Result<ConfigFile> {
    let config: ConfigFile = serde_saphyr::from_str(text)
        .with_context(|| format!("config {} is not valid: fix the key named here", file.display()))?;
    if config.environments.is_empty() {
        bail!("config {}: `environments` is empty; add one (see `dify-gitops init --help`)", file.display());
    }
    Ok(config)
}

/// The environment named `name`, or the only one when `name` is None.
pub fn parse(text: &str, file: &Path, name: Option<&str>, overrides: &Overrides) -> Result<Environment> {
    let config = parse_file(text, file)?;
    if name.is_none() && config.environments.len() > 1 {
        bail!(
            "config {} has several environments ({}): choose one with --env",
            file.display(),
            list(config.environments.keys())
        );
    }
    Ok(select(&config, file, name, overrides)?.remove(0))
}

/// The environment named `name`, or every environment when `name` is None (in name order). Two environments
/// may not share a directory, nor keep one inside the other: each commit stages its environment's directory.
pub fn parse_each(text: &str, file: &Path, name: Option<&str>, overrides: &Overrides) -> Result<Vec<Environment>> {
    select(&parse_file(text, file)?, file, name, overrides)
}

fn select(config: &ConfigFile, file: &Path, name: Option<&str>, overrides: &Overrides) -> Result<Vec<Environment>> {
    let chosen: Vec<(&String, &EnvironmentFile)> = match name {
        Some(name) => {
            let (key, env) = config.environments.get_key_value(name).with_context(|| {
                format!(
                    "config {} has no environment '{name}' (have: {})",
                    file.display(),
                    list(config.environments.keys())
                )
            })?;
            vec![(key, env)]
        }
        None => config.environments.iter().collect(),
    };
    let environments =
        chosen.into_iter().map(|(name, env)| resolve(name, env, file, overrides)).collect::<Result<Vec<_>>>()?;
    check_directories_apart(&environments, file)?;
    Ok(environments)
}

fn check_directories_apart(environments: &[Environment], file: &Path) -> Result<()> {
    for (i, a) in environments.iter().enumerate() {
        for b in &environments[i + 1..] {
            if a.directory.starts_with(&b.directory) || b.directory.starts_with(&a.directory) {
                bail!(
                    "config {}: the directories of environments {} ({}) and {} ({}) overlap: give each a \
                     `directory` of its own, neither inside the other",
                    file.display(),
                    a.name,
                    a.directory.display(),
                    b.name,
                    b.directory.display()
                );
            }
        }
    }
    Ok(())
}

fn resolve(name: &str, env: &EnvironmentFile, file: &Path, overrides: &Overrides) -> Result<Environment> {
    let shown = file.display();
    let name = name.to_string();
    let at = |key: &str| format!("config {shown}: environments.{name}.{key}");

    let path = env.path.clone().unwrap_or_else(|| "/dify".into());
    validate_path(&path).with_context(|| at("path"))?;
    let scheme = match env.scheme.as_deref().unwrap_or("https") {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => bail!("{} is '{other}': use https or http", at("scheme")),
    };
    let image_tag = overrides.image_tag.clone().or_else(|| env.image_tag.clone()).with_context(|| {
        format!(
            "{} is missing: set the Dify release to run, e.g. `imageTag: 1.13.3`, or pass --image-tag",
            at("imageTag")
        )
    })?;
    let recipients_text = if overrides.recipients.is_empty() { &env.recipients } else { &overrides.recipients };
    if recipients_text.is_empty() {
        bail!(
            "{} is empty: list the age recipients (public keys, `age1...`) that may decrypt the overlay's Secret; \
             `age-keygen -y <keyfile>` prints one",
            at("recipients")
        );
    }
    let recipients = Recipients::parse(recipients_text.iter()).with_context(|| at("recipients"))?;
    let directory = PathBuf::from(env.directory.clone().unwrap_or_else(|| format!("apps/{name}/dify")));
    validate_directory(&directory).with_context(|| at("directory"))?;
    let tables = chart_values::Tables {
        plugins: env.plugins.as_ref(),
        egress: env.egress.as_ref(),
        bootstrap: env.bootstrap.as_ref(),
    };
    let values = chart_values::resolve(&tables, &image_tag, &at)?;
    let traefik = env.traefik.as_ref();
    Ok(Environment {
        context: overrides.context.clone().or_else(|| env.context.clone()),
        namespace: non_empty(env.namespace.clone(), "dify", &at("namespace"))?,
        traefik: TraefikTarget {
            service: non_empty(traefik.and_then(|t| t.service.clone()), "kommander-traefik", &at("traefik.service"))?,
            namespace: traefik.and_then(|t| t.namespace.clone()),
        },
        chart: ChartSettings {
            ingress_class: non_empty(env.ingress_class.clone(), "kommander-traefik", &at("ingressClass"))?,
            path,
            scheme,
            storage_class: non_empty(env.storage_class.clone(), "nutanix-volume", &at("storageClass"))?,
            image_repository: non_empty(env.image_repository.clone(), "langgenius/dify", &at("imageRepository"))?,
            image_tag,
            values,
        },
        recipients,
        directory,
        name,
    })
}

fn non_empty(value: Option<String>, default: &str, at: &str) -> Result<String> {
    match value {
        Some(v) if v.trim().is_empty() => bail!("{at} is empty: remove the key to use the default '{default}'"),
        Some(v) => Ok(v),
        None => Ok(default.to_string()),
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// "/" or "/a/b" (no trailing slash, no spaces): what the chart and Next.js's basePath accept.
fn validate_path(path: &str) -> Result<()> {
    let valid = path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))));
    if valid {
        Ok(())
    } else {
        bail!("'{path}' is not a URL path: use \"/\" or a path like \"/dify\" without trailing slash")
    }
}

/// Relative, inside the repo: no `..`, not absolute, not the root itself.
fn validate_directory(dir: &Path) -> Result<()> {
    let inside = !dir.as_os_str().is_empty() && dir.components().all(|c| matches!(c, Component::Normal(_)));
    if inside { Ok(()) } else { bail!("'{}' must be a relative directory inside the ops repo", dir.display()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn parse_text(text: &str) -> Result<Environment> {
        parse(text, Path::new("ops/dify-gitops.yaml"), None, &Overrides::default())
    }

    #[test]
    fn a_minimal_environment_takes_the_nkp_defaults() {
        let env = parse_text(&format!("environments:\n  prod:\n    imageTag: 1.13.3\n    recipients: [{RECIPIENT}]\n"))
            .unwrap();
        assert_eq!(env.name, "prod");
        assert_eq!(env.directory, PathBuf::from("apps/prod/dify"));
        assert_eq!(env.chart.path, "/dify");
        assert_eq!(env.chart.scheme, Scheme::Https);
        assert_eq!(env.chart.storage_class, "nutanix-volume");
        assert_eq!(env.traefik.service, "kommander-traefik");
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_fix() {
        let missing_tag = parse_text(&format!("environments:\n  prod:\n    recipients: [{RECIPIENT}]\n")).unwrap_err();
        let text = format!("{missing_tag:#}");
        assert!(text.contains("ops/dify-gitops.yaml: environments.prod.imageTag is missing"), "{text}");
        assert!(text.contains("--image-tag"), "{text}");

        let typo = parse_text("environments:\n  prod:\n    imageTga: 1.13.3\n").unwrap_err();
        assert!(format!("{typo:#}").contains("imageTga"), "{typo:#}");

        let scheme = parse_text(&format!(
            "environments:\n  prod:\n    imageTag: '1'\n    scheme: ftp\n    recipients: [{RECIPIENT}]\n"
        ))
        .unwrap_err();
        assert!(format!("{scheme:#}").contains("environments.prod.scheme is 'ftp'"));

        let outside = parse_text(&format!(
            "environments:\n  prod:\n    imageTag: '1'\n    directory: ../x\n    recipients: [{RECIPIENT}]\n"
        ))
        .unwrap_err();
        assert!(format!("{outside:#}").contains("environments.prod.directory"));
    }

    #[test]
    fn an_identity_where_a_recipient_belongs_is_refused_without_echoing_it() {
        use age::secrecy::ExposeSecret;
        let generated = age::x25519::Identity::generate().to_string();
        let identity = generated.expose_secret();
        let error = parse_text(&format!("environments:\n  prod:\n    imageTag: '1'\n    recipients: [{identity}]\n"))
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("private identity"), "{text}");
        assert!(!text.contains(identity), "the identity is echoed: {text}");
    }

    #[test]
    fn several_environments_need_a_choice() {
        let text = format!(
            "environments:\n  a: {{imageTag: '1', recipients: [{RECIPIENT}]}}\n  b: {{imageTag: '1', recipients: [{RECIPIENT}]}}\n"
        );
        assert!(format!("{:#}", parse_text(&text).unwrap_err()).contains("choose one with --env"));
        let b = parse(&text, Path::new("c.yaml"), Some("b"), &Overrides::default()).unwrap();
        assert_eq!(b.name, "b");
        let none = parse(&text, Path::new("c.yaml"), Some("c"), &Overrides::default()).unwrap_err();
        assert!(format!("{none:#}").contains("no environment 'c' (have: a, b)"));
    }

    #[test]
    fn without_a_name_every_environment_is_taken_in_name_order() {
        let text = format!(
            "environments:\n  b: {{imageTag: '1', recipients: [{RECIPIENT}]}}\n  a: {{imageTag: '2', recipients: [{RECIPIENT}]}}\n"
        );
        let file = Path::new("c.yaml");
        let each = parse_each(&text, file, None, &Overrides::default()).unwrap();
        let names: Vec<(&str, &str)> = each.iter().map(|e| (e.name.as_str(), e.chart.image_tag.as_str())).collect();
        assert_eq!(names, [("a", "2"), ("b", "1")]);
        let one = parse_each(&text, file, Some("b"), &Overrides::default()).unwrap();
        assert_eq!(one.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["b"]);
        let error = parse_each(&text, file, Some("c"), &Overrides::default()).unwrap_err();
        assert!(format!("{error:#}").contains("no environment 'c' (have: a, b)"), "{error:#}");
        let empty = parse_each("environments: {}\n", file, None, &Overrides::default()).unwrap_err();
        assert!(format!("{empty:#}").contains("`environments` is empty"), "{empty:#}");
    }

    #[test]
    fn environments_whose_directories_overlap_are_refused_naming_both() {
        let env = |name: &str, directory: &str| {
            format!("  {name}: {{imageTag: '1', directory: {directory}, recipients: [{RECIPIENT}]}}\n")
        };
        let file = Path::new("c.yaml");
        for (a, b) in [("apps/x", "apps/x"), ("apps/x", "apps/x/y")] {
            let text = format!("environments:\n{}{}", env("one", a), env("two", b));
            let error = format!("{:#}", parse_each(&text, file, None, &Overrides::default()).unwrap_err());
            assert!(error.contains(&format!("environments one ({a}) and two ({b}) overlap")), "{error}");
            assert!(error.contains("a `directory` of its own"), "{error}");
        }
        let apart = format!("environments:\n{}{}", env("one", "apps/x"), env("two", "apps/xy"));
        assert_eq!(parse_each(&apart, file, None, &Overrides::default()).unwrap().len(), 2);
    }

    #[test]
    fn the_context_flag_wins_over_the_environments_and_traefik_is_resolved_once() {
        let text = format!(
            "environments:\n  prod:\n    context: from-file\n    imageTag: '1'\n    ingressClass: edge\n    \
             traefik: {{service: t, namespace: n}}\n    recipients: [{RECIPIENT}]\n"
        );
        let file = Path::new("c.yaml");
        assert_eq!(parse(&text, file, None, &Overrides::default()).unwrap().context.as_deref(), Some("from-file"));
        let flag = Overrides { context: Some("from-flag".into()), ..Overrides::default() };
        let env = parse(&text, file, None, &flag).unwrap();
        assert_eq!(env.context.as_deref(), Some("from-flag"));
        assert_eq!(env.chart.ingress_class, "edge");
        assert_eq!(env.traefik, TraefikTarget { service: "t".into(), namespace: Some("n".into()) });
    }

    #[test]
    fn paths_are_checked() {
        for good in ["/", "/dify", "/ai/dify"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        for bad in ["", "dify", "/dify/", "//", "/di fy"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
