{{/* Checks that need more than one value. Each failure names the keys and the fix. */}}
{{- define "dify.preflight" -}}
{{- $v := .Values -}}
{{- /* Required keys, in the order of the README, so an empty one is reported by name. */ -}}
{{- range list "expose.ingressClassName" "expose.path" "external.scheme" "external.host" "images.dify.repository" "images.dify.tag" "secrets.difySecretKey" "storage.storageClassName" -}}
{{- $val := $v -}}
{{- range splitList "." . }}{{ $val = index $val . }}{{ end -}}
{{- if not $val }}{{ fail (printf "%s is required (see the chart README, \"Required values\")" .) }}{{ end -}}
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
