//! The config's `plugins`, `egress` and `bootstrap` tables, end to end: `sync` writes them into the overlay's values
//! ConfigMap as typed chart values, and the real chart (`helm template`, Helm 4 and Helm 3) accepts those values
//! and renders what they ask for: the marketplace off, the proxies of api and the plugin daemon, the SSRF proxy's
//! allow-list and parent proxy in squid.conf, and the bootstrap Job. A bad value fails at load, before anything is
//! written or pushed.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::ops::OpsRemote as Ops;

const HOST: [&str; 2] = ["--host", "192.0.2.10"];

/// An air-gapped environment behind a corporate proxy, its model server on a private address, its first admin
/// set up from values.
fn air_gapped_config(recipient: &str) -> String {
    format!(
        "environments:
  prod:
    imageTag: 1.13.3
    recipients: [{recipient}]
    plugins:
      marketplace: false
      verifySignatures: true
      trustedKeys: {{configMap: plugin-keys, keys: [my-org.pem]}}
      pipIndexUrl: https://nexus.corp.example/repository/pypi/simple
      caBundle: {{configMap: corp-ca}}
      installTimeout: 600
    egress:
      proxy: {{http: 'http://proxy.corp.example:3128', https: 'http://proxy.corp.example:3128', noProxy: .corp.example}}
      ssrfProxy:
        allowPrivateNetworks: false
        allowList: {{cidrs: [10.20.0.0/24], domains: [.models.corp.example]}}
        upstream: {{host: proxy.corp.example, port: 8080}}
    bootstrap:
      adminEmail: admin@corp.example
      adminName: Platform team
      modelProvider:
        endpointUrl: http://vllm.models.corp.example:8000/v1
        packageConfigMap: {{name: model-plugin}}
        models:
          - {{name: llama-3-8b, type: llm, credentials: {{context_size: 8192}}}}
          - {{name: bge-m3, type: text-embedding}}
"
    )
}

#[test]
fn a_config_with_plugins_egress_and_bootstrap_syncs_values_the_chart_renders() {
    let ops = Ops::with_config(|recipient, _| air_gapped_config(recipient));
    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "exit 6 = changed: {stdout}{stderr}");
    for change in [
        "pluginDaemon.marketplace = false",
        "ssrfProxy.allowList.cidrs = [10.20.0.0/24]",
        "ssrfProxy.upstream.port = 8080",
        "bootstrap.modelProvider.models = [{name: llama-3-8b, type: llm, credentials: {context_size: \"8192\"}}, \
         {name: bge-m3, type: text-embedding}]",
    ] {
        assert!(stdout.contains(change), "missing `{change}` in: {stdout}");
        assert!(ops.head_message().contains(&format!("- {change}\n")), "{}", ops.head_message());
    }

    let values = overlay_values(&ops.show("apps/prod/dify/dify-values.yaml"));
    assert_eq!(values["pluginDaemon"]["marketplace"], json!(false), "a boolean, not the string 'false'");
    assert_eq!(values["ssrfProxy"]["upstream"]["port"], json!(8080));
    assert_eq!(values["bootstrap"]["enabled"], json!(true));
    assert_eq!(values["api"]["proxy"]["https"], "http://proxy.corp.example:3128");

    // Typed values read back equal: another sync changes nothing.
    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 0, "a second sync must find no change: {stdout}{stderr}");
    assert_eq!(ops.commits(), 2, "config + the one overlay commit");

    let file = ops.dir.path().join("overlay-values.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&values).unwrap()).unwrap();
    for helm in ["helm", "helm3"] {
        let objects = helm_template(helm, &file);
        let api = env_of(&objects, "Deployment", "dify-api", "api");
        assert_eq!(api["MARKETPLACE_ENABLED"], "false", "{helm}");
        assert_eq!(api["HTTPS_PROXY"], "http://proxy.corp.example:3128", "{helm}");
        assert!(api["NO_PROXY"].as_str().unwrap().ends_with(",.corp.example"), "{helm}: {}", api["NO_PROXY"]);

        let daemon = env_of(&objects, "Deployment", "dify-plugin-daemon", "plugin-daemon");
        assert_eq!(daemon["HTTP_PROXY"], "http://proxy.corp.example:3128", "{helm}");
        assert_eq!(daemon["PIP_MIRROR_URL"], "https://nexus.corp.example/repository/pypi/simple", "{helm}");
        assert_eq!(daemon["PYTHON_ENV_INIT_TIMEOUT"], "600", "{helm}");
        assert_eq!(daemon["FORCE_VERIFYING_SIGNATURE"], "true", "{helm}");
        assert_eq!(daemon["THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED"], "true", "{helm}");

        let squid =
            object(&objects, "ConfigMap", "dify-ssrf-proxy")["data"]["squid.conf"].as_str().unwrap().to_string();
        for line in [
            "acl allowed_dst dst 10.20.0.0/24",
            "acl allowed_domain dstdomain .models.corp.example",
            "cache_peer proxy.corp.example parent 8080 ",
            "never_direct allow all",
        ] {
            assert!(squid.contains(line), "{helm}: squid.conf lacks `{line}`:\n{squid}");
        }

        let job = env_of(&objects, "Job", "dify-bootstrap", "bootstrap");
        assert_eq!(job["ADMIN_EMAIL"], "admin@corp.example", "{helm}");
        assert_eq!(job["ADMIN_NAME"], "Platform team", "{helm}");
        assert_eq!(job["MODEL_PLUGIN_PACKAGE"], "/plugin/plugin.difypkg", "{helm}");
        let provider: Value = serde_json::from_str(job["MODEL_PROVIDER"].as_str().unwrap()).unwrap();
        assert_eq!(provider["endpointUrl"], "http://vllm.models.corp.example:8000/v1", "{helm}");
        assert_eq!(
            provider["models"][0],
            json!({"name": "llama-3-8b", "type": "llm", "credentials": {"context_size": "8192"}})
        );
        assert_eq!(
            job["MODEL_API_KEY"]["secretKeyRef"]["key"], "openai-api-key",
            "{helm}: the key stays in the Secret"
        );
    }
}

/// `egress.pluginsThroughSsrfProxy`: the plugin daemon leaves through the release's SSRF proxy, whose parent is the
/// corporate proxy; `egress.proxy` then serves api, worker and beat only.
#[test]
fn a_plugin_daemon_through_the_ssrf_proxy_syncs_values_the_chart_renders() {
    let ops = Ops::with_config(|recipient, _| {
        air_gapped_config(recipient).replace("    egress:\n", "    egress:\n      pluginsThroughSsrfProxy: true\n")
    });
    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 6, "exit 6 = changed: {stdout}{stderr}");
    let values = overlay_values(&ops.show("apps/prod/dify/dify-values.yaml"));
    assert_eq!(values["pluginDaemon"]["egressThroughSsrfProxy"], json!(true));
    assert_eq!(values["pluginDaemon"]["proxy"], Value::Null, "the daemon's own proxy stays unset");
    let file = ops.dir.path().join("overlay-values.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&values).unwrap()).unwrap();
    for helm in ["helm", "helm3"] {
        let objects = helm_template(helm, &file);
        let daemon = env_of(&objects, "Deployment", "dify-plugin-daemon", "plugin-daemon");
        assert_eq!(daemon["HTTP_PROXY"], "http://dify-ssrf-proxy:3128", "{helm}");
        assert_eq!(daemon["HTTPS_PROXY"], "http://dify-ssrf-proxy:3128", "{helm}");
        let direct: Vec<&str> = daemon["NO_PROXY"].as_str().unwrap().split(',').collect();
        assert!(direct.contains(&"nexus.corp.example") && direct.contains(&"dify-api"), "{helm}: {direct:?}");
        assert!(!direct.contains(&".corp.example"), "{helm}: the config's noProxy is api's only: {direct:?}");
        let api = env_of(&objects, "Deployment", "dify-api", "api");
        assert_eq!(api["HTTPS_PROXY"], "http://proxy.corp.example:3128", "{helm}");
    }
}

#[test]
fn a_bad_value_fails_at_load_and_nothing_is_pushed() {
    let ops = Ops::with_config(|recipient, _| {
        air_gapped_config(recipient).replace("cidrs: [10.20.0.0/24]", "cidrs: [10.20.0.0/24, 10.20.0.0/33]")
    });
    let (code, stdout, stderr) = ops.sync(&["sync", HOST[0], HOST[1]]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "environments.prod.egress.ssrfProxy.allowList.cidrs[1] is '10.20.0.0/33': not an IPv4 or IPv6 address or \
             CIDR range"
        ),
        "{stderr}"
    );
    assert_eq!(ops.commits(), 1, "only the config: nothing was written or pushed");
}

/// The chart values inside the overlay's ConfigMap.
fn overlay_values(configmap: &str) -> Value {
    let configmap: Value = serde_saphyr::from_str(configmap).unwrap();
    serde_saphyr::from_str(configmap["data"]["values.yaml"].as_str().unwrap()).unwrap()
}

/// `helm template` of the chart with the overlay's values, plus the one value the HelmRelease adds from the Secret
/// (`secrets.difySecretKey`, a test value here).
fn helm_template(helm: &str, values: &Path) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/dify");
    let output = Command::new(helm)
        .args(["template", "dify"])
        .arg(&chart)
        .args(["--namespace", "dify", "--values"])
        .arg(values)
        .args(["--set", "secrets.difySecretKey=test-only-not-a-secret"])
        .output()
        .unwrap_or_else(|e| panic!("{helm} not runnable ({e}): export PATH=$(scripts/test-tools path):$PATH"));
    assert!(output.status.success(), "{helm} template failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap().into_iter().filter(|o| !o.is_null()).collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// A container's env by name: the value, or the `valueFrom` object.
fn env_of(objects: &[Value], kind: &str, name: &str, container: &str) -> serde_json::Map<String, Value> {
    let containers = object(objects, kind, name)["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    let container = containers.iter().find(|c| c["name"] == container).expect("the container");
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.get("value").or(e.get("valueFrom")).unwrap().clone()))
        .collect()
}
