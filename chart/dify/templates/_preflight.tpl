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
{{- if eq $v.storage.files.type "s3" -}}
{{- range list "endpoint" "bucket" "existingSecret" -}}
{{- if not (index $v.storage.files.s3 .) }}{{ fail (printf "storage.files.s3.%s is required with storage.files.type=s3" .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.storage.files.type "pvc") (gt (int $v.api.replicas) 1) (eq $v.storage.files.accessMode "ReadWriteOnce") -}}
{{- /* Allowed: the pods share the node of the volume (pod affinity); noted here so nobody removes that rule. */ -}}
{{- end -}}
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
{{- end -}}
