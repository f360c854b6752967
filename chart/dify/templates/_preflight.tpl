{{/* The one list of required keys: empty in values.yaml, no default possible. Each with what it holds, for the
message. values.yaml marks the same keys "(required)" in their comments (the README and schema are generated from
those; a chart test keeps the two lists equal). */}}
{{- define "dify.requiredKeys" -}}
- {key: expose.ingressClassName, what: "the IngressClass serving Dify, e.g. the cluster's Traefik class"}
- {key: expose.path, what: "the public path, \"/\" or e.g. /dify"}
- {key: external.scheme, what: "http or https"}
- {key: external.host, what: "the host or load-balancer IP browsers use"}
- {key: images.dify.repository, what: "the prefix of the Dify images, e.g. langgenius/dify"}
- {key: images.dify.tag, what: "the Dify release tag, e.g. 1.13.3"}
- {key: secrets.difySecretKey, what: "Dify's SECRET_KEY, e.g. $(openssl rand -hex 32)"}
- {key: storage.storageClassName, what: "the StorageClass of every PVC"}
{{- end -}}

{{/* The value of a required key (dict root key), or a failure naming it. Every template reads required keys
through this: Helm renders templates in its own order, so whichever reads an empty key first fails with the
message preflight would give. */}}
{{- define "dify.required" -}}
{{- $val := .root.Values -}}
{{- range splitList "." .key }}{{ $val = index $val . }}{{ end -}}
{{- if not $val -}}
{{- $what := "" -}}
{{- range include "dify.requiredKeys" . | fromYamlArray }}{{ if eq .key $.key }}{{ $what = .what }}{{ end }}{{ end -}}
{{- if not $what }}{{ fail (printf "dify.required: %s is not in dify.requiredKeys" .key) }}{{ end -}}
{{- fail (printf "%s is required: %s (see the chart README, \"Required values\")" .key $what) -}}
{{- end -}}
{{- $val -}}
{{- end -}}

{{/* Checks that need more than one value. Each failure names the keys and the fix. */}}
{{- define "dify.preflight" -}}
{{- $v := .Values -}}
{{- /* Required keys, in the order of the list, so an empty one is reported by name. */ -}}
{{- range include "dify.requiredKeys" . | fromYamlArray -}}
{{- $_ := include "dify.required" (dict "root" $ "key" .key) -}}
{{- end -}}
{{- $base := include "dify.basePath" . -}}
{{- if and $base (not (include "dify.atLeast" (dict "root" . "min" "1.3.0"))) -}}
{{- fail (printf "Dify %s cannot be served under expose.path %q: its web has no base-path support (Dify 1.3 or later has). Set expose.path=/" (include "dify.version" .) $base) -}}
{{- end -}}
{{- /* A web image must exist for the path: the user's, Dify's stock one for "/", or the project's for /dify. */ -}}
{{- $_ := include "dify.webSource" . -}}
{{- if not (has $v.external.scheme (list "http" "https")) -}}
{{- fail (printf "external.scheme must be http or https, not %q" $v.external.scheme) -}}
{{- end -}}
{{- if regexMatch "[/:]" $v.external.host -}}
{{- fail (printf "external.host %q must be a bare host or IP: the scheme goes in external.scheme, the path in expose.path" $v.external.host) -}}
{{- end -}}
{{- if and $v.expose.matchHost (regexMatch "^[0-9.]+$" $v.external.host) -}}
{{- fail "expose.matchHost needs external.host to be a DNS name: an Ingress host cannot be an IP address" -}}
{{- end -}}
{{- if or (eq $v.storage.files.type "s3") (eq (include "dify.pluginStorage" .) "s3") -}}
{{- $why := ternary "storage.files.type=s3" "storage.pluginDaemon.type=s3 (the daemon uses the files store's settings)" (eq $v.storage.files.type "s3") -}}
{{- range list "endpoint" "bucket" "existingSecret" -}}
{{- if not (index $v.storage.files.s3 .) }}{{ fail (printf "storage.files.s3.%s is required with %s" . $why) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- include "dify.preflightScaling" . -}}
{{- include "dify.preflightBootstrap" . -}}
{{- include "dify.preflightEgress" . -}}
{{- if and (eq (toString $v.collaboration.enabled) "true") (not (include "dify.atLeast" (dict "root" . "min" "1.14.0"))) -}}
{{- fail (printf "collaboration.enabled=true needs Dify 1.14 or later (images.dify.tag is %s)" (include "dify.version" .)) -}}
{{- end -}}
{{- if and $v.agent.enabled (not (include "dify.atLeast" (dict "root" . "min" "1.16.0"))) -}}
{{- fail (printf "agent.enabled=true needs Dify 1.16 or later (images.dify.tag is %s)" (include "dify.version" .)) -}}
{{- end -}}
{{- if not $v.postgresql.enabled -}}
{{- range list "host" "username" "existingSecret" -}}
{{- if not (index $v.externalDatabase .) }}{{ fail (printf "externalDatabase.%s is required when postgresql.enabled is false" .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $v.redis.enabled -}}
{{- range list "host" "existingSecret" -}}
{{- if not (index $v.externalRedis .) }}{{ fail (printf "externalRedis.%s is required when redis.enabled is false" .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $v.weaviate.enabled -}}
{{- range list "endpoint" "existingSecret" -}}
{{- if not (index $v.externalWeaviate .) }}{{ fail (printf "externalWeaviate.%s is required when weaviate.enabled is false" .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- /* Last: it names backup.image.tag for an external database whose own keys are complete. */ -}}
{{- include "dify.preflightUpgrade" . -}}
{{- end -}}


{{/* Scale-out layouts that cannot work. Each failure names the key that asks for more than one pod and the fix. */}}
{{- define "dify.preflightScaling" -}}
{{- $v := .Values -}}
{{- range list "api" "worker" "web" -}}
{{- $a := (index $v .).autoscaling -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above %s.autoscaling.maxReplicas (%v): raise maxReplicas or lower minReplicas" . $a.minReplicas . $a.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- /* A ReadWriteOnce files volume holds api and worker on its node (dify.filesAffinity): a second pod of either
cannot spread, and an HPA would stack every pod it adds onto that one node. */ -}}
{{- if include "dify.filesColocated" . -}}
{{- range list "api" "worker" -}}
{{- $want := include "dify.scaleRequest" (dict "key" . "values" (index $v .)) -}}
{{- if $want -}}
{{- fail (printf "%s asks for more than one %s pod, but the files volume is ReadWriteOnce (storage.files.accessMode) and pins api and worker to one node. Set storage.files.accessMode=ReadWriteMany with a class that offers it in storage.files.storageClassName (e.g. Nutanix Files), or storage.files.type=s3; or set %s.replicas=1 and %s.autoscaling.enabled=false" $want . . .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range list (list "beat" "two beats would schedule every periodic task twice") (list "pluginDaemon" "its plugins live on one ReadWriteOnce volume that one pod mounts at a time") -}}
{{- $key := index . 0 -}}
{{- $want := include "dify.scaleRequest" (dict "key" $key "values" (index $v $key)) -}}
{{- if $want -}}
{{- fail (printf "%s: %s runs exactly one pod, %s. Set %s.replicas=1 and %s.autoscaling.enabled=false" $want $key (index . 1) $key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The value that asks a component (dict key values) for more than one pod, as "key=value", or nothing. */}}
{{- define "dify.scaleRequest" -}}
{{- if include "dify.autoscaled" .values -}}
{{- printf "%s.autoscaling.enabled=true" .key -}}
{{- else if gt (int .values.replicas) 1 -}}
{{- printf "%s.replicas=%v" .key .values.replicas -}}
{{- end -}}
{{- end -}}

{{/* The bootstrap Job's values: what it needs to set up the admin, and exactly one source of the model plugin. */}}
{{- define "dify.preflightBootstrap" -}}
{{- $b := .Values.bootstrap -}}
{{- $m := $b.modelProvider -}}
{{- if and $m.enabled (not $b.enabled) -}}
{{- fail "bootstrap.modelProvider.enabled=true needs bootstrap.enabled=true: the Job signs in as the admin it sets up" -}}
{{- end -}}
{{- if $b.enabled -}}
{{- if not (regexMatch "^[^@ ]+@[^@ ]+$" $b.adminEmail) -}}
{{- fail (printf "bootstrap.adminEmail %q must be the first admin's email address (bootstrap.enabled=true)" $b.adminEmail) -}}
{{- end -}}
{{- end -}}
{{- if $m.enabled -}}
{{- if not (regexMatch "^https?://[^/]+" $m.endpointUrl) -}}
{{- fail (printf "bootstrap.modelProvider.endpointUrl %q must be the endpoint's http(s) base URL, e.g. http://vllm.models.svc:8000/v1" $m.endpointUrl) -}}
{{- end -}}
{{- if not $m.models -}}
{{- fail "bootstrap.modelProvider.models is empty: name at least one model, e.g. [{name: llama-3-8b, type: llm}]" -}}
{{- end -}}
{{- $sources := len (compact (list $m.marketplaceIdentifier $m.packageConfigMap.name $m.packageUrl)) -}}
{{- if eq $sources 0 -}}
{{- fail "bootstrap.modelProvider needs the model plugin: set marketplaceIdentifier, or packageConfigMap.name or packageUrl for a local package" -}}
{{- end -}}
{{- if gt $sources 1 -}}
{{- fail "bootstrap.modelProvider: set one of marketplaceIdentifier, packageConfigMap.name and packageUrl" -}}
{{- end -}}
{{- if and $m.packageUrl (not (regexMatch "^https?://[^/]+/" $m.packageUrl)) -}}
{{- fail (printf "bootstrap.modelProvider.packageUrl %q must be an http(s) URL of the .difypkg file" $m.packageUrl) -}}
{{- end -}}
{{- if and $m.marketplaceIdentifier (not (regexMatch "^[a-z0-9_-]+/[a-z0-9_-]+:[^@]+@[0-9a-f]{64}$" $m.marketplaceIdentifier)) -}}
{{- fail (printf "bootstrap.modelProvider.marketplaceIdentifier %q must be a plugin's unique identifier, <org>/<plugin>:<version>@<sha256>" $m.marketplaceIdentifier) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Plugin signatures, proxies and the SSRF proxy's allow-list. Each failure names the value and the fix. */}}
{{- define "dify.preflightEgress" -}}
{{- $v := .Values -}}
{{- $keys := $v.pluginDaemon.trustedKeys -}}
{{- if and $keys.configMap $keys.secret -}}
{{- fail "pluginDaemon.trustedKeys: set configMap or secret, not both" -}}
{{- end -}}
{{- if and (or $keys.configMap $keys.secret) (not $keys.keys) -}}
{{- fail "pluginDaemon.trustedKeys.keys is empty: list the keys of the ConfigMap or Secret that hold the public keys, e.g. keys={my-org.pem}" -}}
{{- end -}}
{{- if and $keys.keys (not (or $keys.configMap $keys.secret)) -}}
{{- fail "pluginDaemon.trustedKeys.keys needs pluginDaemon.trustedKeys.configMap or pluginDaemon.trustedKeys.secret: the ConfigMap or Secret that holds them" -}}
{{- end -}}
{{- range $keys.keys -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" .) }}{{ fail (printf "pluginDaemon.trustedKeys.keys: %q is not a ConfigMap or Secret key (letters, digits, '-', '_', '.')" .) }}{{ end -}}
{{- end -}}
{{- if and $keys.keys (not $v.pluginDaemon.forceVerifyingSignature) -}}
{{- fail "pluginDaemon.trustedKeys has no effect with pluginDaemon.forceVerifyingSignature=false (every package installs, signed or not): set forceVerifyingSignature=true or remove trustedKeys" -}}
{{- end -}}
{{- $dp := $v.pluginDaemon.proxy -}}
{{- if and $v.pluginDaemon.egressThroughSsrfProxy (or $dp.http $dp.https $dp.noProxy) -}}
{{- fail "pluginDaemon.egressThroughSsrfProxy sends the plugin daemon through the SSRF proxy, so pluginDaemon.proxy (http, https, noProxy) must stay empty: set ssrfProxy.upstream to the corporate proxy instead (its host and port), and list private model endpoints in ssrfProxy.allowList" -}}
{{- end -}}
{{- range list "api" "pluginDaemon" -}}
{{- $p := (index $v .).proxy -}}
{{- if and $p.noProxy (not (or $p.http $p.https)) -}}
{{- fail (printf "%s.proxy.noProxy is set without %s.proxy.http or %s.proxy.https: set the proxy, or remove noProxy" . . .) -}}
{{- end -}}
{{- end -}}
{{- $allow := $v.ssrfProxy.allowList -}}
{{- range $allow.cidrs -}}
{{- if not (include "dify.isCidr" .) }}{{ fail (printf "ssrfProxy.allowList.cidrs: %q is not an IPv4 or IPv6 address or CIDR range, e.g. 10.20.0.0/24 or fd00:20::/64" .) }}{{ end -}}
{{- end -}}
{{- range $allow.domains -}}
{{- if not (regexMatch "^[.]?([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?[.])*[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$" .) }}{{ fail (printf "ssrfProxy.allowList.domains: %q is not a domain name, e.g. vllm.models.corp or .models.corp (with its sub-domains)" .) }}{{ end -}}
{{- end -}}
{{- if and (or $allow.cidrs $allow.domains) (eq (include "dify.ssrfAllowPrivate" .) "true") -}}
{{- fail (printf "ssrfProxy.allowList has no effect while the SSRF proxy lets every private network through (ssrfProxy.allowPrivateNetworks is %v for Dify %s): set ssrfProxy.allowPrivateNetworks=false to block the others" (ternary "empty, so open below 1.15" $v.ssrfProxy.allowPrivateNetworks (eq (toString $v.ssrfProxy.allowPrivateNetworks) "")) (include "dify.version" .)) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the string (an address or a CIDR range, IPv4 or IPv6) is one squid's dst ACL takes. */}}
{{- define "dify.isCidr" -}}
{{- $octet := "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])" -}}
{{- if regexMatch (printf "^(%s[.]){3}%s(/(3[0-2]|[12]?[0-9]))?$" $octet $octet) . -}}true
{{- else if and (contains ":" .) (regexMatch "^[0-9A-Fa-f:]+(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?$" .) (lt (len (regexFindAll "::" . -1)) 2) -}}true
{{- end -}}
{{- end -}}
