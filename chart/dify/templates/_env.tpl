{{/* An env var read from a Secret key: dict name secret key. */}}
{{- define "dify.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/* Environment of the api image (api, worker, beat, migration). Secrets come only through secretKeyRef; the
Celery broker URL embeds the Redis password by Kubernetes $(VAR) expansion, never as a literal.
Call with dict root mode. */}}
{{- define "dify.apiEnv" -}}
{{- $root := .root -}}
{{- $v1 := include "dify.v1" $root -}}
{{- $url := include "dify.publicUrl" $root -}}
{{- $internal := include "dify.internalSecretName" $root -}}
- name: MODE
  value: {{ .mode | quote }}
# One migration path: the post-install/post-upgrade Job. No long-running pod migrates.
- name: MIGRATION_ENABLED
  value: "false"
- name: DEPLOY_ENV
  value: PRODUCTION
- name: LOG_LEVEL
  value: INFO
# As Dify's compose sets them: no unauthenticated Swagger UI on the public API prefixes, no usage analytics.
- name: SWAGGER_UI_ENABLED
  value: "false"
- name: SCARF_NO_ANALYTICS
  value: "true"
{{- if include "dify.atLeast" (dict "root" $root "min" "1.17.0") }}
- name: DEPLOYMENT_EDITION
  value: COMMUNITY
{{- else }}
- name: EDITION
  value: SELF_HOSTED
{{- end }}
{{ include "dify.secretEnv" (dict "name" "SECRET_KEY" "secret" (include "dify.userSecretName" $root) "key" "secret-key") }}
{{- if eq .mode "api" }}
{{ include "dify.secretEnv" (dict "name" "INIT_PASSWORD" "secret" $internal "key" "init-password") }}
{{- end }}
{{- range list "CONSOLE_API_URL" "CONSOLE_WEB_URL" "SERVICE_API_URL" "APP_API_URL" "APP_WEB_URL" "FILES_URL" "TRIGGER_URL" }}
- name: {{ . }}
  value: {{ $url | quote }}
{{- end }}
- name: ENDPOINT_URL_TEMPLATE
  value: {{ printf "%s/e/{hook_id}" $url | quote }}
- name: INTERNAL_FILES_URL
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "api" "port" 5001) | quote }}
# Database
- name: DB_TYPE
  value: postgresql
- name: DB_HOST
  value: {{ include "dify.db.host" $root | quote }}
- name: DB_PORT
  value: {{ include "dify.db.port" $root | quote }}
- name: DB_USERNAME
  value: {{ include "dify.db.user" $root | quote }}
{{ include "dify.db.passwordEnv" (dict "root" $root "name" "DB_PASSWORD") }}
- name: DB_DATABASE
  value: {{ include "dify.db.name" $root | quote }}
# Redis (db 0 for cache, db 1 for Celery)
- name: REDIS_HOST
  value: {{ include "dify.redis.host" $root | quote }}
- name: REDIS_PORT
  value: {{ include "dify.redis.port" $root | quote }}
- name: REDIS_USERNAME
  value: {{ ternary "" $root.Values.externalRedis.username $root.Values.redis.enabled | quote }}
{{ include "dify.redis.passwordEnv" (dict "root" $root "name" "REDIS_PASSWORD") }}
- name: REDIS_USE_SSL
  value: {{ include "dify.redis.ssl" $root | quote }}
- name: REDIS_DB
  value: "0"
- name: CELERY_BROKER_URL
  value: {{ printf "%s://%s:$(REDIS_PASSWORD)@%s:%s/1" (ternary "rediss" "redis" (eq (include "dify.redis.ssl" $root) "true")) (ternary "" $root.Values.externalRedis.username $root.Values.redis.enabled) (include "dify.redis.host" $root) (include "dify.redis.port" $root) | quote }}
- name: CELERY_BACKEND
  value: redis
# Files
{{- if eq $root.Values.storage.files.type "s3" }}
{{- $s3 := $root.Values.storage.files.s3 }}
- name: STORAGE_TYPE
  value: s3
- name: S3_ENDPOINT
  value: {{ $s3.endpoint | quote }}
- name: S3_BUCKET_NAME
  value: {{ $s3.bucket | quote }}
- name: S3_REGION
  value: {{ $s3.region | quote }}
- name: S3_ADDRESS_STYLE
  value: {{ $s3.addressStyle | quote }}
- name: S3_USE_AWS_MANAGED_IAM
  value: "false"
{{ include "dify.secretEnv" (dict "name" "S3_ACCESS_KEY" "secret" $s3.existingSecret "key" $s3.accessKeyKey) }}
{{ include "dify.secretEnv" (dict "name" "S3_SECRET_KEY" "secret" $s3.existingSecret "key" $s3.secretKeyKey) }}
{{- else if $v1 }}
- name: STORAGE_TYPE
  value: opendal
- name: OPENDAL_SCHEME
  value: fs
- name: OPENDAL_FS_ROOT
  value: storage
{{- else }}
- name: STORAGE_TYPE
  value: local
- name: STORAGE_LOCAL_PATH
  value: storage
{{- end }}
# Vector store
- name: VECTOR_STORE
  value: weaviate
- name: WEAVIATE_ENDPOINT
  value: {{ include "dify.weaviate.endpoint" $root | quote }}
{{- with include "dify.weaviate.grpcEndpoint" $root }}
- name: WEAVIATE_GRPC_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{ include "dify.weaviate.apiKeyEnv" (dict "root" $root "name" "WEAVIATE_API_KEY") }}
# Code execution and outbound HTTP go through the sandbox and the SSRF proxy.
- name: CODE_EXECUTION_ENDPOINT
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "sandbox" "port" 8194) | quote }}
{{ include "dify.secretEnv" (dict "name" "CODE_EXECUTION_API_KEY" "secret" $internal "key" "sandbox-api-key") }}
- name: SSRF_PROXY_HTTP_URL
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "ssrf-proxy" "port" 3128) | quote }}
- name: SSRF_PROXY_HTTPS_URL
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "ssrf-proxy" "port" 3128) | quote }}
{{- /* From 1.14 Dify's own default is on: off must be said, or the UI expects a WebSocket nothing serves. */}}
{{- if include "dify.atLeast" (dict "root" $root "min" "1.14.0") }}
- name: ENABLE_COLLABORATION_MODE
  value: {{ ternary "true" "false" (eq (include "dify.collaboration" $root) "true") | quote }}
{{- end }}
{{- if $v1 }}
# Plugin daemon
- name: PLUGIN_DAEMON_URL
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "plugin-daemon" "port" 5002) | quote }}
{{ include "dify.secretEnv" (dict "name" "PLUGIN_DAEMON_KEY" "secret" $internal "key" "plugin-daemon-key") }}
{{ include "dify.secretEnv" (dict "name" "INNER_API_KEY_FOR_PLUGIN" "secret" $internal "key" "inner-api-key") }}
# The daemon's own package limit (50 MiB); Dify's default, 15 MiB, refuses larger marketplace plugins.
- name: PLUGIN_MAX_PACKAGE_SIZE
  value: "52428800"
- name: MARKETPLACE_ENABLED
  value: {{ $root.Values.pluginDaemon.marketplace | toString | quote }}
{{- end }}
{{- /* The api's own calls out (the marketplace, OAuth, mail APIs): users' requests go through the SSRF proxy, which
Dify sets on those clients itself and which these do not change. */}}
{{- include "dify.proxyEnv" (dict "root" $root "proxy" $root.Values.api.proxy) }}
{{- if include "dify.agent" $root }}
# Agent node runtime
- name: AGENT_BACKEND_BASE_URL
  value: {{ include "dify.internalUrl" (dict "root" $root "component" "agent-backend" "port" 5050) | quote }}
{{ include "dify.secretEnv" (dict "name" "AGENT_BACKEND_API_TOKEN" "secret" $internal "key" "agent-api-token") }}
{{- end }}
{{- end -}}

{{/* A container's env list (dict env extra key): env is the chart's own list, rendered YAML; extra the component's
extraEnv, key its name for messages. An extraEnv entry whose name the chart also sets takes that variable's place
(so $(VAR) references that follow it still see it); the others follow the chart's. One entry per name in the
result: Kubernetes keeps duplicates and the last wins, which hid overrides. */}}
{{- define "dify.env" -}}
{{- $extra := dict -}}
{{- range .extra -}}
{{- if not .name }}{{ fail (printf "%s: every entry needs a name (a Kubernetes EnvVar)" $.key) }}{{ end -}}
{{- if hasKey $extra .name }}{{ fail (printf "%s sets %s twice: keep one entry" $.key .name) }}{{ end -}}
{{- $_ := set $extra .name . -}}
{{- end -}}
{{- $out := list -}}
{{- $replaced := dict -}}
{{- range fromYamlArray .env -}}
{{- if hasKey $extra .name -}}
{{- $out = append $out (get $extra .name) -}}
{{- $_ := set $replaced .name true -}}
{{- else -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- range .extra }}{{ if not (hasKey $replaced .name) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end -}}

{{/* NO_PROXY for a proxied component (dict root extra): loopback, the cluster's domains, every Service of the
release that speaks HTTP or gRPC, an external Weaviate's host, the S3 store's host when files or plugins live there,
then the comma-separated extra entries. Short Service names are listed one by one: Python's and Go's clients match
NO_PROXY by name suffix, not by search domain. The S3 store is the files store of the cluster's network (Nutanix
Objects): boto3 (api, worker) and the daemon's Go SDK honour HTTP(S)_PROXY, and without it here every file and plugin
package went through the corporate proxy (seen in tests/dify with the real daemon 0.6.1). */}}
{{- define "dify.noProxy" -}}
{{- $root := .root -}}
{{- $direct := list "localhost" "127.0.0.1" "::1" ".svc" ".cluster.local" -}}
{{- range list "api" "plugin-daemon" "sandbox" "ssrf-proxy" "weaviate" "agent-backend" -}}
{{- $direct = append $direct (include "dify.componentName" (dict "root" $root "component" .)) -}}
{{- end -}}
{{- if not $root.Values.weaviate.enabled -}}
{{- with $root.Values.externalWeaviate.endpoint }}{{ $direct = append $direct (urlParse .).hostname }}{{ end -}}
{{- end -}}
{{- if or (eq $root.Values.storage.files.type "s3") (eq (include "dify.pluginStorage" $root) "s3") -}}
{{- with $root.Values.storage.files.s3.endpoint }}{{ with (urlParse .).hostname }}{{ $direct = append $direct . }}{{ end }}{{ end -}}
{{- end -}}
{{- range splitList "," (.extra | default "") }}{{ if trim . }}{{ $direct = append $direct (trim .) }}{{ end }}{{ end -}}
{{- join "," (uniq $direct) -}}
{{- end -}}

{{/* NO_PROXY of the plugin daemon when it leaves through the SSRF proxy (pluginDaemon.egressThroughSsrfProxy):
loopback, each Service of the release by every name it answers to, and the hosts the daemon needs that the
allow-list is not for (the plugin store, the PyPI mirror). No cluster domain: a plugin given another Service's name
goes through the allow-list like any other private destination. */}}
{{- define "dify.noProxyReleaseOnly" -}}
{{- $root := . -}}
{{- $ns := $root.Release.Namespace -}}
{{- $direct := list "localhost" "127.0.0.1" "::1" -}}
{{- range list "api" "plugin-daemon" "sandbox" "ssrf-proxy" "weaviate" "agent-backend" -}}
{{- $name := include "dify.componentName" (dict "root" $root "component" .) -}}
{{- $direct = concat $direct (list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns)) -}}
{{- end -}}
{{- if eq (include "dify.pluginStorage" $root) "s3" -}}
{{- with $root.Values.storage.files.s3.endpoint }}{{ $direct = append $direct (urlParse .).hostname }}{{ end -}}
{{- end -}}
{{- with $root.Values.pluginDaemon.pipIndexUrl }}{{ $direct = append $direct (urlParse .).hostname }}{{ end -}}
{{- join "," (uniq $direct) -}}
{{- end -}}

{{/* HTTP_PROXY, HTTPS_PROXY and NO_PROXY of a component (dict root proxy), nothing when proxy has no URL. */}}
{{- define "dify.proxyEnv" -}}
{{- with .proxy -}}
{{- if or .http .https -}}
{{- with .http }}
- {name: HTTP_PROXY, value: {{ . | quote }}}
{{- end }}
{{- with .https }}
- {name: HTTPS_PROXY, value: {{ . | quote }}}
{{- end }}
- {name: NO_PROXY, value: {{ include "dify.noProxy" (dict "root" $.root "extra" .noProxy) | quote }}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the SSRF proxy lets requests through to private networks: ssrfProxy.allowPrivateNetworks, or when
empty by Dify version (open below 1.15, blocked from 1.15 as Dify's own proxy is). */}}
{{- define "dify.ssrfAllowPrivate" -}}
{{- $allow := .Values.ssrfProxy.allowPrivateNetworks -}}
{{- if eq (toString $allow) "" -}}
{{- $allow = not (include "dify.atLeast" (dict "root" . "min" "1.15.0")) -}}
{{- end -}}
{{- $allow | toString -}}
{{- end -}}
