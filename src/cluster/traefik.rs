//! Kommander's Traefik Service: find it (named namespace, or across namespaces), then wait for its
//! load-balancer address with a watch, so the address is reported the moment MetalLB assigns it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use crate::exit::{Exit, Failure};

/// Labels the Traefik Helm chart puts on its Service; used when no Service has the expected name.
const TRAEFIK_NAME_LABEL: &str = "app.kubernetes.io/name=traefik";

/// Where to look for Kommander's Traefik Service (from the flags or the config's `traefik:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraefikTarget {
    /// The Service's name.
    pub service: String,
    /// Its namespace; None: searched across namespaces.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    Ip,
    Hostname,
}

/// The discovered front door of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Discovered {
    pub namespace: String,
    pub service: String,
    pub address: String,
    pub kind: AddressKind,
    pub waited_seconds: f64,
}

/// The load-balancer address of a Service: the first ingress IP, else its hostname.
pub fn load_balancer_address(service: &Service) -> Option<(String, AddressKind)> {
    let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?;
    match (&ingress.ip, &ingress.hostname) {
        (Some(ip), _) if !ip.is_empty() => Some((ip.clone(), AddressKind::Ip)),
        (_, Some(host)) if !host.is_empty() => Some((host.clone(), AddressKind::Hostname)),
        _ => None,
    }
}

/// Finds the Traefik Service: in the given namespace; else the Service of that name in any namespace; else the
/// one LoadBalancer Service labelled as Traefik's. Zero or several candidates is an error listing what was found.
pub async fn find_service(client: &kube::Client, target: &TraefikTarget) -> Result<(ServiceRef, Service)> {
    let name = &target.service;
    if let Some(namespace) = &target.namespace {
        let service = Api::<Service>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .with_context(|| format!("reading Service {namespace}/{name}"))?
            .with_context(|| {
                format!(
                    "Service {namespace}/{name} not found: check --traefik-namespace and --traefik-service, \
                     or omit --traefik-namespace to search every namespace"
                )
            })?;
        return Ok((ServiceRef { namespace: namespace.clone(), name: name.clone() }, service));
    }
    let all: Api<Service> = Api::all(client.clone());
    let by_name = all
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .context(
            "listing Services across namespaces (needs list on services cluster-wide, or pass --traefik-namespace)",
        )?
        .items;
    let candidates = if by_name.is_empty() {
        let labelled =
            all.list(&ListParams::default().labels(TRAEFIK_NAME_LABEL)).await.context("listing Traefik Services")?;
        labelled.items.into_iter().filter(is_load_balancer).collect()
    } else {
        by_name
    };
    match <[Service; 1]>::try_from(candidates) {
        Ok([service]) => Ok((service_ref(&service), service)),
        Err(candidates) if candidates.is_empty() => Err(anyhow::anyhow!(
            "no Traefik Service found: no Service named '{name}' in any namespace and no LoadBalancer Service \
             labelled {TRAEFIK_NAME_LABEL}; is Kommander's Traefik installed? Pass --traefik-service/--traefik-namespace"
        )),
        Err(candidates) => {
            let list: Vec<String> = candidates.iter().map(|s| service_ref(s).to_string()).collect();
            Err(anyhow::anyhow!(
                "several Traefik Services found: {}; choose one with --traefik-namespace",
                list.join(", ")
            ))
        }
    }
}

fn is_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn service_ref(service: &Service) -> ServiceRef {
    ServiceRef {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
    }
}

/// Finds the Service and waits (watching it) until it has a load-balancer address, at most `timeout`.
pub async fn discover(
    client: &kube::Client,
    target: &TraefikTarget,
    timeout: Duration,
    progress: bool,
) -> Result<Discovered> {
    let started = Instant::now();
    let (service_ref, service) = find_service(client, target).await?;
    let found = |(address, kind): (String, AddressKind)| Discovered {
        namespace: service_ref.namespace.clone(),
        service: service_ref.name.clone(),
        address,
        kind,
        waited_seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(address) = load_balancer_address(&service) {
        return Ok(found(address));
    }
    tracing::info!(service = %service_ref, "waiting for a load-balancer address");
    let api: Api<Service> = Api::namespaced(client.clone(), &service_ref.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", service_ref.name));
    let mut addresses = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .map_ok(|service| load_balancer_address(&service))
        .boxed();
    let progress = progress && std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = addresses.next() => match next {
                Some(Ok(Some(address))) => {
                    if progress { eprintln!(); }
                    return Ok(found(address));
                }
                Some(Ok(None)) => {}
                Some(Err(error)) => tracing::warn!(%error, "watch error; retrying"),
                None => anyhow::bail!("the watch on Service {service_ref} ended unexpectedly"),
            },
            _ = ticker.tick(), if progress => {
                eprint!("\rwaiting for a load-balancer address on Service {service_ref}: {:>4} s", started.elapsed().as_secs());
            }
            _ = &mut deadline => {
                if progress { eprintln!(); }
                return Err(Failure::error(Exit::Timeout, format!(
                    "Service {service_ref} has no load-balancer address after {}: inspect it with \
                     `kubectl -n {} describe service {}` (is MetalLB / the CAREN service load balancer running?)",
                    humanize(timeout), service_ref.namespace, service_ref.name
                )));
            }
        }
    }
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
