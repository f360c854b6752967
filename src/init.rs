//! `dify-gitops init`: lays out a new ops repo for one environment from the templates in `gitops/` (compiled into
//! the binary): the config, the Flux Kustomization under `clusters/<env>/`, the overlay directory's static files
//! (the HelmRelease in the API version the cluster serves) and the reconcile and review workflows.
//! The overlay's values ConfigMap and encrypted Secret are left to `sync`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cluster::flux::HelmReleaseApi;
use crate::sops::Recipients;

/// (template, path in the ops repo with `ENV` for the environment and `OVERLAY` for its overlay directory).
const TEMPLATES: &[(&str, &str)] = &[
    (include_str!("../gitops/clusters/ENV/dify.yaml"), "clusters/ENV/dify.yaml"),
    (include_str!("../gitops/apps/ENV/dify/kustomization.yaml"), "OVERLAY/kustomization.yaml"),
    (include_str!("../gitops/apps/ENV/dify/namespace.yaml"), "OVERLAY/namespace.yaml"),
    (include_str!("../gitops/apps/ENV/dify/chart-source.yaml"), "OVERLAY/chart-source.yaml"),
    (include_str!("../gitops/workflows/reconcile.yml"), ".github/workflows/reconcile.yml"),
    (include_str!("../gitops/workflows/review.yml"), ".github/workflows/review.yml"),
];
const HELMRELEASE_V2: &str = include_str!("../gitops/apps/ENV/dify/helmrelease.yaml");
const HELMRELEASE_V2BETA2: &str = include_str!("../gitops/variants/helmrelease.v2beta2.yaml");

pub struct Params<'a> {
    pub env: &'a str,
    pub namespace: &'a str,
    pub image_tag: &'a str,
    pub recipients: &'a Recipients,
    pub chart_git_url: &'a str,
    pub chart_git_branch: &'a str,
    pub helmrelease_api: HelmReleaseApi,
}

/// The files to write, relative to the ops repo root.
pub fn files(params: &Params) -> Result<Vec<(PathBuf, String)>> {
    validate_name(params.env, "--env")?;
    validate_name(params.namespace, "--namespace")?;
    let overlay = format!("apps/{}/dify", params.env);
    let fill = |template: &str| {
        template
            .replace("${DIFY_ENV}", params.env)
            .replace("${DIFY_NAMESPACE}", params.namespace)
            .replace("${OVERLAY_DIR}", &overlay)
            .replace("${CHART_GIT_URL}", params.chart_git_url)
            .replace("${CHART_GIT_BRANCH}", params.chart_git_branch)
    };
    let place = |path: &str| PathBuf::from(path.replace("OVERLAY", &overlay).replace("ENV", params.env));
    let mut files: Vec<(PathBuf, String)> = TEMPLATES.iter().map(|(t, p)| (place(p), fill(t))).collect();
    let helmrelease = match params.helmrelease_api {
        HelmReleaseApi::V2 => HELMRELEASE_V2,
        HelmReleaseApi::V2beta2 => HELMRELEASE_V2BETA2,
    };
    files.push((place("OVERLAY/helmrelease.yaml"), fill(helmrelease)));
    files.push((PathBuf::from(crate::config::CONFIG_FILE), config(params, &overlay)));
    Ok(files)
}

fn config(params: &Params, overlay: &str) -> String {
    let recipients: Vec<&str> = params.recipients.iter().collect();
    format!(
        "# dify-gitops: the environments Dify runs in. Secrets are not here: `dify-gitops sync` generates them,\n\
         # encrypted for the recipients (public age keys). Keys and defaults: README.md, \"The ops repo config\".\n\
         environments:\n  {env}:\n    namespace: {ns}\n    imageTag: \"{tag}\"\n    recipients:\n{list}    \
         directory: {overlay}\n",
        env = params.env,
        ns = params.namespace,
        tag = params.image_tag,
        list = recipients.iter().map(|r| format!("      - {r}\n")).collect::<String>(),
    )
}

/// A DNS label: it names a directory, a namespace and Kubernetes objects.
fn validate_name(name: &str, flag: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid { Ok(()) } else { bail!("{flag} '{name}' must be a DNS label: lowercase letters, digits and '-'") }
}

/// Writes the files; refuses (writing nothing) when any already exists, unless `force`.
pub fn write(root: &Path, files: &[(PathBuf, String)], force: bool) -> Result<()> {
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| root.join(p).exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() && !force {
        bail!(
            "{} already exist(s) in {}: init lays out a new environment; pass --force to overwrite",
            existing.join(", "),
            root.display()
        );
    }
    let borrowed: Vec<(PathBuf, &str)> = files.iter().map(|(p, c)| (p.clone(), c.as_str())).collect();
    crate::opsrepo::write_atomically(root, &borrowed).context("writing the ops repo layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(recipients: &Recipients, api: HelmReleaseApi) -> Params<'_> {
        Params {
            env: "prod",
            namespace: "dify",
            image_tag: "1.13.3",
            recipients,
            chart_git_url: "https://example.test/dify-gitops.git",
            chart_git_branch: "main",
            helmrelease_api: api,
        }
    }

    #[test]
    fn every_placeholder_is_filled_and_paths_name_the_environment() {
        let recipients = Recipients::parse(["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]).unwrap();
        let files = files(&params(&recipients, HelmReleaseApi::V2)).unwrap();
        let paths: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        assert!(paths.contains(&"clusters/prod/dify.yaml".to_string()));
        assert!(paths.contains(&"apps/prod/dify/helmrelease.yaml".to_string()));
        for (path, text) in &files {
            for placeholder in
                ["${DIFY_ENV}", "${DIFY_NAMESPACE}", "${OVERLAY_DIR}", "${CHART_GIT_URL}", "${CHART_GIT_BRANCH}"]
            {
                assert!(!text.contains(placeholder), "{} keeps {placeholder}", path.display());
            }
        }
        let kustomization = &files.iter().find(|(p, _)| p.ends_with("clusters/prod/dify.yaml")).unwrap().1;
        assert!(kustomization.contains("path: ./apps/prod/dify"));
    }

    #[test]
    fn the_helmrelease_follows_the_api_the_cluster_serves() {
        let recipients = Recipients::parse(["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]).unwrap();
        for (api, expected) in [
            (HelmReleaseApi::V2, "apiVersion: helm.toolkit.fluxcd.io/v2\n"),
            (HelmReleaseApi::V2beta2, "apiVersion: helm.toolkit.fluxcd.io/v2beta2\n"),
        ] {
            let files = files(&params(&recipients, api)).unwrap();
            let release = &files.iter().find(|(p, _)| p.ends_with("helmrelease.yaml")).unwrap().1;
            assert!(release.contains(expected), "{api:?}");
        }
    }

    #[test]
    fn names_must_be_dns_labels() {
        assert!(validate_name("prod-eu", "--env").is_ok());
        assert!(validate_name("Prod", "--env").unwrap_err().to_string().contains("--env 'Prod'"));
        assert!(validate_name("a/b", "--namespace").is_err());
    }
}
