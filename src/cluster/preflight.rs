//! Preflight: can this cluster run Dify behind Kommander's Traefik? Each check reads what it needs, then a pure
//! function judges it, so the judgement is testable without a cluster and the reads stay thin.

use anyhow::Result;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;

use super::traefik::{TraefikTarget, find_service, load_balancer_address};
use super::{footprint, quantity};
pub use crate::report::Status;

/// Kubernetes minors this release is tested against (NKP 2.12 ships 1.29; the test bed runs 1.36).
const OLDEST_SUPPORTED_MINOR: u32 = 28;
const NEWEST_TESTED_MINOR: u32 = 37;
const TRAEFIK_CONTROLLER: &str = "traefik.io/ingress-controller";

/// The chart's default install requests for Dify `version` (major, minor; None: the newest, which has every
/// component), summed over the components the chart renders for it (measured from the chart's rendering,
/// [`footprint::DEFAULT_INSTALL`]): (millicpu, bytes). Each component's share is logged at debug level (`-v`).
fn dify_requests(version: Option<(u32, u32)>) -> (u64, u64) {
    let rendered = |c: &&footprint::Component| version.is_none_or(|v| c.since <= v);
    footprint::DEFAULT_INSTALL.iter().filter(rendered).fold((0, 0), |(cpu, memory), c| {
        tracing::debug!(
            component = c.name,
            pods = c.pods,
            cpu = c.millicpu as f64 / 1000.0,
            memory_mib = c.memory >> 20,
            "Dify requests (per pod)"
        );
        (cpu + c.pods * c.millicpu, memory + c.pods * c.memory)
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, reason: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, reason: reason.into(), fix: None }
    }
    fn skip(name: &'static str, reason: impl Into<String>) -> Self {
        Self { name, status: Status::Skip, reason: reason.into(), fix: None }
    }
    fn warn(name: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Warn, reason: reason.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, reason: reason.into(), fix: Some(fix.into()) }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// What preflight checks the cluster for.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Where Kommander's Traefik Service is.
    pub traefik: TraefikTarget,
    /// The IngressClass Traefik serves.
    pub ingress_class: String,
    /// The namespace Dify is installed into.
    pub namespace: String,
    /// Dify's StorageClass; None: the cluster's default.
    pub storage_class: Option<String>,
    /// A ReadWriteMany StorageClass for the shared files volume, when one is planned.
    pub rwx_storage_class: Option<String>,
    /// The path Dify is served under (`expose.path`).
    pub path: String,
    /// The web image the user names for that path (`images.web`), if any.
    pub web_image: Option<String>,
    /// The Dify version (major, minor) to be installed, which decides the components counted for capacity;
    /// None: the newest.
    pub dify_version: Option<(u32, u32)>,
}

/// Runs every check. The API check comes first: when the server cannot be reached, the rest is not tried.
pub async fn run(client: &kube::Client, args: &Inputs) -> Report {
    let api = check_api(client).await;
    let checks = if api.status == Status::Fail {
        vec![api]
    } else {
        vec![
            api,
            check_storage_class(client, args.storage_class.as_deref()).await,
            check_ingress_class(client, &args.ingress_class).await,
            check_traefik_address(client, args).await,
            judge_web_image(&args.path, args.web_image.as_deref()),
            check_middleware_crd(client).await,
            check_namespace(client, &args.namespace).await,
            check_rbac(client, &args.namespace).await,
            check_rwx_storage_class(client, args.rwx_storage_class.as_deref()).await,
            check_capacity(client, args.dify_version).await,
        ]
    };
    Report { passed: checks.iter().all(|c| c.status != Status::Fail), checks }
}

async fn check_api(client: &kube::Client) -> Check {
    const NAME: &str = "api-server";
    match client.apiserver_version().await {
        Err(error) => Check::fail(
            NAME,
            format!("cannot reach the API server: {error}"),
            "check --kubeconfig/--context and that the cluster is up (`kubectl version`)",
        ),
        Ok(info) => judge_version(&info.major, &info.minor, &info.git_version),
    }
}

pub fn judge_version(major: &str, minor: &str, git_version: &str) -> Check {
    const NAME: &str = "api-server";
    let minor_number: Option<u32> = minor.trim_end_matches('+').parse().ok();
    match (major, minor_number) {
        ("1", Some(m)) if m < OLDEST_SUPPORTED_MINOR => Check::fail(
            NAME,
            format!("Kubernetes {git_version} is older than 1.{OLDEST_SUPPORTED_MINOR}"),
            "upgrade the cluster (NKP 2.12 or newer)",
        ),
        ("1", Some(m)) if m > NEWEST_TESTED_MINOR => Check::warn(
            NAME,
            format!("Kubernetes {git_version} is newer than the newest tested (1.{NEWEST_TESTED_MINOR})"),
            "it will most likely work; report problems with the version in the issue",
        ),
        ("1", Some(_)) => Check::pass(NAME, format!("reachable, Kubernetes {git_version}")),
        _ => Check::warn(NAME, format!("unrecognised server version '{git_version}'"), "check `kubectl version`"),
    }
}

/// The chart's web image rule (chart README, "Serving under a path"): Next.js fixes the base path when the web is
/// built, so Dify's stock web image serves `/` only, the project publishes one built for `/dify`, and any other path
/// needs the user's own build. Said here so that nobody first meets it as a blank page.
pub fn judge_web_image(path: &str, web_image: Option<&str>) -> Check {
    const NAME: &str = "web-image";
    const RECIPE: &str = "the web-image workflow, or scripts/dify-web-build and .github/docker/dify-web.Dockerfile";
    match (path, web_image) {
        ("/", None) => Check::pass(NAME, "path /: Dify's stock web image serves it"),
        ("/", Some(image)) => Check::pass(NAME, format!("path /: {image}")),
        ("/dify", None) => Check::pass(
            NAME,
            "path /dify: the chart takes ghcr.io/dify-gitops/dify-web:<Dify version>, built for /dify",
        ),
        (path, Some(image)) => Check::warn(
            NAME,
            format!("path {path}: {image} must be Dify's web built with NEXT_PUBLIC_BASE_PATH={path}"),
            format!(
                "build it with {RECIPE} if it is not; after the install `dify-gitops verify --url https://<address>{path}` \
                 tells a web built for another path"
            ),
        ),
        (path, None) => Check::fail(
            NAME,
            format!(
                "path {path}: no published web image is built for it (Next.js fixes the base path at build time), so \
                 the chart refuses to install"
            ),
            format!(
                "build Dify's web with NEXT_PUBLIC_BASE_PATH={path} ({RECIPE}), set images.web.repository/tag to it, \
                 and pass --web-image REPOSITORY:TAG here; or serve Dify at /dify"
            ),
        ),
    }
}

async fn check_storage_class(client: &kube::Client, requested: Option<&str>) -> Check {
    const NAME: &str = "storage-class";
    match Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await {
        Err(error) => Check::fail(NAME, format!("cannot list StorageClasses: {error}"), "grant list on storageclasses"),
        Ok(list) => judge_storage_class(&list.items, requested),
    }
}

pub fn judge_storage_class(classes: &[StorageClass], requested: Option<&str>) -> Check {
    const NAME: &str = "storage-class";
    let describe =
        |c: &StorageClass| format!("{} (provisioner {})", c.metadata.name.as_deref().unwrap_or(""), c.provisioner);
    match requested {
        Some(name) => match classes.iter().find(|c| c.metadata.name.as_deref() == Some(name)) {
            Some(class) => Check::pass(NAME, format!("StorageClass {}", describe(class))),
            None => Check::fail(
                NAME,
                format!("StorageClass '{name}' not found"),
                format!("pass an existing class with --storage-class (have: {})", names(classes)),
            ),
        },
        None => {
            let defaults: Vec<&StorageClass> = classes.iter().filter(|c| is_default_class(c)).collect();
            match defaults.as_slice() {
                [class] => Check::pass(NAME, format!("default StorageClass {}", describe(class))),
                [] => Check::fail(
                    NAME,
                    "no default StorageClass",
                    format!("pass --storage-class (have: {}) or mark one as default", names(classes)),
                ),
                several => Check::warn(
                    NAME,
                    format!("{} default StorageClasses", several.len()),
                    "pass --storage-class to choose one explicitly",
                ),
            }
        }
    }
}

fn is_default_class(class: &StorageClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get("storageclass.kubernetes.io/is-default-class").is_some_and(|v| v == "true"))
}

fn names(classes: &[StorageClass]) -> String {
    let names: Vec<&str> = classes.iter().filter_map(|c| c.metadata.name.as_deref()).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

async fn check_ingress_class(client: &kube::Client, name: &str) -> Check {
    const NAME: &str = "ingress-class";
    match Api::<IngressClass>::all(client.clone()).get_opt(name).await {
        Err(error) => {
            Check::fail(NAME, format!("cannot read IngressClass {name}: {error}"), "grant get on ingressclasses")
        }
        Ok(None) => Check::fail(
            NAME,
            format!("IngressClass '{name}' not found"),
            "is Kommander's Traefik installed on this cluster? Otherwise pass --ingress-class",
        ),
        Ok(Some(class)) => {
            let controller = class.spec.and_then(|s| s.controller).unwrap_or_default();
            if controller == TRAEFIK_CONTROLLER {
                Check::pass(NAME, format!("IngressClass {name} (controller {controller})"))
            } else {
                Check::fail(
                    NAME,
                    format!("IngressClass {name} belongs to controller '{controller}', not Traefik"),
                    format!("pass the class whose controller is {TRAEFIK_CONTROLLER} with --ingress-class"),
                )
            }
        }
    }
}

async fn check_traefik_address(client: &kube::Client, args: &Inputs) -> Check {
    const NAME: &str = "traefik-address";
    match find_service(client, &args.traefik).await {
        Err(error) => Check::fail(NAME, format!("{error:#}"), "pass --traefik-service/--traefik-namespace"),
        Ok((service_ref, service)) => match load_balancer_address(&service) {
            Some((address, _)) => Check::pass(NAME, format!("Service {service_ref} has address {address}")),
            None => Check::fail(
                NAME,
                format!("Service {service_ref} has no load-balancer address"),
                format!(
                    "check the cluster's load balancer (MetalLB): `kubectl -n {} describe service {}`",
                    service_ref.namespace, service_ref.name
                ),
            ),
        },
    }
}

async fn check_middleware_crd(client: &kube::Client) -> Check {
    const NAME: &str = "middleware-crd";
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let current = match crds.get_opt("middlewares.traefik.io").await {
        Ok(crd) => crd,
        Err(error) => {
            return Check::warn(NAME, format!("cannot read CRDs: {error}"), "grant get on customresourcedefinitions");
        }
    };
    let serves_v1alpha1 =
        current.as_ref().is_some_and(|crd| crd.spec.versions.iter().any(|v| v.name == "v1alpha1" && v.served));
    if serves_v1alpha1 {
        return Check::pass(NAME, "Middleware traefik.io/v1alpha1 is served");
    }
    match crds.get_opt("middlewares.traefik.containo.us").await {
        Ok(Some(_)) => Check::warn(
            NAME,
            "only the old Middleware group traefik.containo.us is served",
            "the chart writes traefik.io/v1alpha1: upgrade Traefik's CRDs (NKP 2.12+ ships them)",
        ),
        _ => Check::fail(
            NAME,
            "Middleware CRD traefik.io/v1alpha1 not found",
            "install Kommander's Traefik (its CRDs) on this cluster",
        ),
    }
}

async fn check_namespace(client: &kube::Client, namespace: &str) -> Check {
    const NAME: &str = "namespace";
    match Api::<Namespace>::all(client.clone()).get_opt(namespace).await {
        Ok(Some(_)) => Check::pass(NAME, format!("namespace {namespace} exists")),
        Ok(None) | Err(_) => match can(client, "create", "", "namespaces", None).await {
            Ok(true) => Check::pass(NAME, format!("namespace {namespace} does not exist yet and can be created")),
            Ok(false) => Check::fail(
                NAME,
                format!("namespace {namespace} does not exist and you may not create it"),
                format!("ask an admin: `kubectl create namespace {namespace}`"),
            ),
            Err(error) => Check::fail(NAME, format!("cannot review access: {error:#}"), "check the API server"),
        },
    }
}

/// What installing the chart creates in its namespace: (verb, API group, resource).
const INSTALL_NEEDS: &[(&str, &str, &str)] = &[
    ("create", "apps", "deployments"),
    ("create", "apps", "statefulsets"),
    ("create", "batch", "jobs"),
    ("create", "", "services"),
    ("create", "", "configmaps"),
    ("create", "", "secrets"),
    ("get", "", "secrets"),
    ("create", "", "persistentvolumeclaims"),
    ("create", "", "serviceaccounts"),
    ("create", "networking.k8s.io", "ingresses"),
    ("create", "networking.k8s.io", "networkpolicies"),
    ("create", "policy", "poddisruptionbudgets"),
    ("create", "traefik.io", "middlewares"),
];

async fn check_rbac(client: &kube::Client, namespace: &str) -> Check {
    const NAME: &str = "rbac";
    let mut missing = Vec::new();
    for (verb, group, resource) in INSTALL_NEEDS {
        match can(client, verb, group, resource, Some(namespace)).await {
            Ok(true) => {}
            Ok(false) => missing.push(format!("{verb} {}", qualified(group, resource))),
            Err(error) => return Check::fail(NAME, format!("cannot review access: {error:#}"), "check the API server"),
        }
    }
    if missing.is_empty() {
        Check::pass(NAME, format!("may create everything the chart installs in {namespace}"))
    } else {
        Check::fail(
            NAME,
            format!("missing in namespace {namespace}: {}", missing.join(", ")),
            "use an identity bound to the `admin` ClusterRole in that namespace",
        )
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

/// SelfSubjectAccessReview: may the current identity do `verb` on `resource`?
async fn can(client: &kube::Client, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn check_rwx_storage_class(client: &kube::Client, requested: Option<&str>) -> Check {
    const NAME: &str = "rwx-storage-class";
    let Some(name) = requested else {
        return Check::skip(NAME, "not requested: api and worker share a ReadWriteOnce volume on one node");
    };
    match Api::<StorageClass>::all(client.clone()).get_opt(name).await {
        Err(error) => {
            Check::fail(NAME, format!("cannot read StorageClass {name}: {error}"), "grant get on storageclasses")
        }
        Ok(None) => Check::fail(
            NAME,
            format!("StorageClass '{name}' not found"),
            "create a Nutanix Files class (e.g. nutanix-dynamicfile) or drop --rwx-storage-class",
        ),
        Ok(Some(class)) => judge_rwx_class(&class),
    }
}

pub fn judge_rwx_class(class: &StorageClass) -> Check {
    const NAME: &str = "rwx-storage-class";
    let name = class.metadata.name.as_deref().unwrap_or_default();
    let storage_type = class.parameters.as_ref().and_then(|p| p.get("storageType")).map(String::as_str);
    let file_like = storage_type == Some("NutanixFiles")
        || ["nfs", "file", "cephfs", "efs"].iter().any(|k| class.provisioner.to_lowercase().contains(k));
    if file_like {
        Check::pass(NAME, format!("StorageClass {name} ({}) can serve ReadWriteMany", class.provisioner))
    } else {
        Check::warn(
            NAME,
            format!("StorageClass {name} ({}) does not look like a file (ReadWriteMany) class", class.provisioner),
            "on NKP use a Nutanix Files class (storageType: NutanixFiles); block volumes are ReadWriteOnce",
        )
    }
}

async fn check_capacity(client: &kube::Client, dify_version: Option<(u32, u32)>) -> Check {
    match Api::<Node>::all(client.clone()).list(&ListParams::default()).await {
        Err(error) => {
            Check::warn("capacity", format!("cannot list nodes: {error}"), "grant list on nodes to check capacity")
        }
        Ok(list) => judge_capacity(&list.items, dify_version),
    }
}

pub fn judge_capacity(nodes: &[Node], dify_version: Option<(u32, u32)>) -> Check {
    const NAME: &str = "capacity";
    let (mut cpu, mut memory) = (0u64, 0u64);
    for node in nodes {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        if let Some(allocatable) = allocatable {
            cpu += allocatable.get("cpu").and_then(|q| quantity::millis(&q.0)).unwrap_or(0);
            memory += allocatable.get("memory").and_then(|q| quantity::bytes(&q.0)).unwrap_or(0);
        }
    }
    let (dify_cpu, dify_memory) = dify_requests(dify_version);
    let which = match dify_version {
        Some((major, minor)) => format!("Dify {major}.{minor}"),
        None => "the newest Dify".to_string(),
    };
    let summary = format!(
        "{} node(s), allocatable {} CPU / {} GiB; the default install of {which} requests {} CPU / {:.2} GiB",
        nodes.len(),
        cpu as f64 / 1000.0,
        memory / (1 << 30),
        dify_cpu as f64 / 1000.0,
        dify_memory as f64 / f64::from(1u32 << 30)
    );
    if cpu >= dify_cpu && memory >= dify_memory {
        Check::pass(NAME, summary)
    } else {
        Check::warn(NAME, summary, "add worker nodes or lower the chart's requests; pods may stay Pending")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_web_image_check_says_which_paths_need_a_build_of_their_own() {
        assert_eq!(judge_web_image("/", None).status, Status::Pass);
        assert_eq!(judge_web_image("/dify", None).status, Status::Pass);
        let other = judge_web_image("/ai", None);
        assert_eq!(other.status, Status::Fail);
        assert!(other.fix.as_deref().unwrap().contains("NEXT_PUBLIC_BASE_PATH=/ai"), "{other:?}");
        assert!(other.fix.as_deref().unwrap().contains("--web-image"), "{other:?}");
        let own = judge_web_image("/ai", Some("registry.example.com/dify-web-ai:1.13.3"));
        assert_eq!(own.status, Status::Warn);
        assert!(own.reason.contains("NEXT_PUBLIC_BASE_PATH=/ai"), "{own:?}");
    }

    use super::*;

    fn class(name: &str, provisioner: &str, default: bool) -> StorageClass {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": if default {
                serde_json::json!({"storageclass.kubernetes.io/is-default-class": "true"})
            } else { serde_json::json!({}) }},
            "provisioner": provisioner
        }))
        .unwrap()
    }

    #[test]
    fn versions_older_than_supported_fail_and_newer_than_tested_warn() {
        assert_eq!(judge_version("1", "27", "v1.27.9").status, Status::Fail);
        assert_eq!(judge_version("1", "29+", "v1.29.6").status, Status::Pass);
        assert_eq!(judge_version("1", "40", "v1.40.0").status, Status::Warn);
    }

    #[test]
    fn storage_class_default_named_missing_and_ambiguous() {
        let classes = [class("nutanix-volume", "csi.nutanix.com", true), class("other", "x", false)];
        assert_eq!(judge_storage_class(&classes, None).status, Status::Pass);
        assert_eq!(judge_storage_class(&classes, Some("other")).status, Status::Pass);
        let missing = judge_storage_class(&classes, Some("gold"));
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.fix.unwrap().contains("nutanix-volume, other"));
        assert_eq!(judge_storage_class(&classes[1..], None).status, Status::Fail);
        let two = [class("a", "x", true), class("b", "y", true)];
        assert_eq!(judge_storage_class(&two, None).status, Status::Warn);
    }

    #[test]
    fn capacity_warns_below_the_chart_requests() {
        let node = |cpu: &str, mem: &str| -> Node {
            serde_json::from_value(serde_json::json!({"status": {"allocatable": {"cpu": cpu, "memory": mem}}})).unwrap()
        };
        assert_eq!(judge_capacity(&[], None).status, Status::Warn);
        assert_eq!(judge_capacity(&[node("1500m", "4Gi")], None).status, Status::Warn);
        assert_eq!(judge_capacity(&[node("1500m", "4Gi"), node("1", "4Gi")], None).status, Status::Pass);
    }

    #[test]
    fn capacity_takes_its_totals_from_the_measured_footprint() {
        let node = |cpu: u64, memory: u64| -> Node {
            serde_json::from_value(serde_json::json!({"status": {"allocatable": {
                "cpu": format!("{cpu}m"), "memory": memory.to_string()}}}))
            .unwrap()
        };
        let (cpu, memory) = dify_requests(None);
        // The chart's default install: every component once, its long-running workloads only.
        assert!(footprint::DEFAULT_INSTALL.iter().any(|c| c.name == "api" && c.pods == 1));
        assert!(!footprint::DEFAULT_INSTALL.iter().any(|c| c.name == "migration"));
        assert_eq!(judge_capacity(&[node(cpu, memory)], None).status, Status::Pass);
        assert_eq!(judge_capacity(&[node(cpu - 1, memory)], None).status, Status::Warn);
        assert_eq!(judge_capacity(&[node(cpu, memory - 1)], None).status, Status::Warn);
        let reason = judge_capacity(&[node(cpu, memory)], None).reason;
        assert!(reason.contains(&format!("requests {} CPU / ", cpu as f64 / 1000.0)), "{reason}");
    }

    #[test]
    fn capacity_counts_only_what_the_chart_renders_for_the_dify_version() {
        let websocket = footprint::DEFAULT_INSTALL.iter().find(|c| c.name == "api-websocket").unwrap();
        assert_eq!(websocket.since, (1, 14));
        let (newest_cpu, newest_memory) = dify_requests(None);
        assert_eq!(dify_requests(Some((1, 14))), (newest_cpu, newest_memory));
        let older = (newest_cpu - websocket.millicpu, newest_memory - websocket.memory);
        assert_eq!(dify_requests(Some((1, 13))), older);
        assert_eq!(dify_requests(Some((0, 15))), older);
        // Enough for 1.13, not for 1.14: the websocket pod is what tips it.
        let node: Node = serde_json::from_value(serde_json::json!({"status": {"allocatable": {
            "cpu": format!("{}m", older.0), "memory": older.1.to_string()}}}))
        .unwrap();
        assert_eq!(judge_capacity(std::slice::from_ref(&node), Some((1, 13))).status, Status::Pass);
        let newer = judge_capacity(&[node], Some((1, 14)));
        assert_eq!(newer.status, Status::Warn);
        assert!(newer.reason.contains("Dify 1.14"), "{newer:?}");
    }
}
