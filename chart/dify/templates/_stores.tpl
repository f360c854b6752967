{{/* Data store coordinates, bundled or external: hosts, ports and the env vars that carry their secrets
(built with dify.secretEnv, _env.tpl).
The templates never ask which one is in use; these helpers do. */}}

{{- define "dify.db.host" -}}
{{- if .Values.postgresql.enabled }}{{ include "dify.componentName" (dict "root" . "component" "postgresql") }}{{ else }}{{ .Values.externalDatabase.host }}{{ end -}}
{{- end -}}
{{- define "dify.db.port" -}}{{ ternary 5432 .Values.externalDatabase.port .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.user" -}}{{ ternary .Values.postgresql.username .Values.externalDatabase.username .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.name" -}}{{ ternary .Values.postgresql.database .Values.externalDatabase.database .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.pluginName" -}}{{ ternary "dify_plugin" .Values.externalDatabase.pluginDatabase .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.sslMode" -}}{{ ternary "disable" .Values.externalDatabase.sslMode .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.passwordEnv" -}}
{{- if .root.Values.postgresql.enabled -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" (include "dify.internalSecretName" .root) "key" "postgres-password") }}
{{- else -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" .root.Values.externalDatabase.existingSecret "key" .root.Values.externalDatabase.passwordKey) }}
{{- end -}}
{{- end -}}

{{- define "dify.redis.host" -}}
{{- if .Values.redis.enabled }}{{ include "dify.componentName" (dict "root" . "component" "redis") }}{{ else }}{{ .Values.externalRedis.host }}{{ end -}}
{{- end -}}
{{- define "dify.redis.port" -}}{{ ternary 6379 .Values.externalRedis.port .Values.redis.enabled }}{{- end -}}
{{- define "dify.redis.ssl" -}}{{ and (not .Values.redis.enabled) .Values.externalRedis.useSSL }}{{- end -}}
{{- define "dify.redis.passwordEnv" -}}
{{- if .root.Values.redis.enabled -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" (include "dify.internalSecretName" .root) "key" "redis-password") }}
{{- else -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" .root.Values.externalRedis.existingSecret "key" .root.Values.externalRedis.passwordKey) }}
{{- end -}}
{{- end -}}

{{- define "dify.weaviate.endpoint" -}}
{{- if .Values.weaviate.enabled }}{{ include "dify.internalUrl" (dict "root" . "component" "weaviate" "port" 8080) }}{{ else }}{{ .Values.externalWeaviate.endpoint }}{{ end -}}
{{- end -}}
{{- define "dify.weaviate.grpcEndpoint" -}}
{{- if .Values.weaviate.enabled }}{{ printf "grpc://%s:50051" (include "dify.componentName" (dict "root" . "component" "weaviate")) }}{{ else }}{{ .Values.externalWeaviate.grpcEndpoint }}{{ end -}}
{{- end -}}
{{- define "dify.weaviate.apiKeyEnv" -}}
{{- if .root.Values.weaviate.enabled -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" (include "dify.internalSecretName" .root) "key" "weaviate-api-key") }}
{{- else -}}
{{ include "dify.secretEnv" (dict "name" .name "secret" .root.Values.externalWeaviate.existingSecret "key" .root.Values.externalWeaviate.apiKeyKey) }}
{{- end -}}
{{- end -}}

{{/* Where the plugin daemon keeps packages and installed plugins: "s3" or "pvc" (storage.pluginDaemon.type, by
default following storage.files.type). */}}
{{- define "dify.pluginStorage" -}}
{{- .Values.storage.pluginDaemon.type | default (ternary "s3" "pvc" (eq .Values.storage.files.type "s3")) -}}
{{- end -}}
