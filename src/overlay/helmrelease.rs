//! Keeps the HelmRelease that `init` wrote on the API the cluster's Flux serves. An NKP upgrade from 2.12 to 2.13
//! moves Flux from 2.2 (HelmRelease `v2beta2` only) to 2.3+ (`v2`, with `v2beta2` deprecated and later removed);
//! the two versions of our HelmRelease differ in `apiVersion` only, so following the cluster is a one-line edit.
//! A file the operator took over (no `app.kubernetes.io/managed-by: dify-gitops`) or on another version is left alone.

use super::changes::Change;
use crate::cluster::flux::HelmReleaseApi;

/// The file name `init` gives the HelmRelease in the environment's directory.
pub const HELMRELEASE_FILE: &str = "helmrelease.yaml";

const GROUP_PREFIX: &str = "apiVersion: helm.toolkit.fluxcd.io/";

/// The HelmRelease file moved to `served`, with the change to report; None when nothing is to be done.
pub fn retarget(text: &str, served: HelmReleaseApi) -> Option<(String, Change)> {
    let ours = text.lines().any(|l| l.trim() == "kind: HelmRelease")
        && text.lines().any(|l| l.trim() == "app.kubernetes.io/managed-by: dify-gitops");
    if !ours {
        return None;
    }
    let line = text.lines().find(|l| l.starts_with(GROUP_PREFIX))?;
    let current = line.trim_end().strip_prefix("apiVersion: ")?;
    let known = [HelmReleaseApi::V2, HelmReleaseApi::V2beta2].iter().any(|api| api.api_version() == current);
    if !known || current == served.api_version() {
        return None;
    }
    let retargeted = text.replacen(line, &format!("apiVersion: {}", served.api_version()), 1);
    let change = Change::Value {
        key: "HelmRelease apiVersion".into(),
        old: Some(current.into()),
        new: Some(served.api_version().into()),
    };
    Some((retargeted, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2BETA2: &str = "# comment naming helm.toolkit.fluxcd.io/v2\napiVersion: helm.toolkit.fluxcd.io/v2beta2\n\
        kind: HelmRelease\nmetadata:\n  name: dify\n  labels:\n    app.kubernetes.io/managed-by: dify-gitops\nspec: {}\n";

    #[test]
    fn a_managed_release_follows_the_served_api_in_one_line() {
        let (text, change) = retarget(V2BETA2, HelmReleaseApi::V2).unwrap();
        assert_eq!(text, V2BETA2.replace("fluxcd.io/v2beta2\n", "fluxcd.io/v2\n"));
        assert_eq!(
            change.to_string(),
            "HelmRelease apiVersion helm.toolkit.fluxcd.io/v2beta2 -> helm.toolkit.fluxcd.io/v2"
        );
        let (back, _) = retarget(&text, HelmReleaseApi::V2beta2).unwrap();
        assert_eq!(back, V2BETA2);
        assert!(retarget(V2BETA2, HelmReleaseApi::V2beta2).is_none(), "already on the served API");
    }

    #[test]
    fn files_the_operator_owns_or_other_versions_are_left_alone() {
        let unmanaged = V2BETA2.replace("app.kubernetes.io/managed-by: dify-gitops", "team: platform");
        assert!(retarget(&unmanaged, HelmReleaseApi::V2).is_none());
        let older = V2BETA2.replace("v2beta2", "v2beta1");
        assert!(retarget(&older, HelmReleaseApi::V2).is_none(), "v2beta1 differs in more than apiVersion");
        assert!(retarget("kind: ConfigMap\n", HelmReleaseApi::V2).is_none());
    }
}
