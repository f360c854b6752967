{{/* Names, labels, versions, images, URLs and secret references. Every helper is prefixed "dify." so that the
library subcharts (which call some of them) never clash. */}}

{{- define "dify.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "dify" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-dify" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. The base is cut at 40 characters so the longest
component suffix keeps the total within 63. */}}
{{- define "dify.componentName" -}}
{{- printf "%s-%s" (include "dify.fullname" .root) .component -}}
{{- end -}}

{{- define "dify.selectorLabels" -}}
app.kubernetes.io/name: dify
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dify.labels" -}}
{{ include "dify.selectorLabels" . }}
app.kubernetes.io/part-of: dify
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ include "dify.version" .root | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Selects every pod of this release: what data stores accept traffic from. */}}
{{- define "dify.releasePodSelector" -}}
app.kubernetes.io/name: dify
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* ---- versions ---- */}}

{{/* The Dify version: images.dify.version when set (tags that are no version), else images.dify.tag. */}}
{{- define "dify.version" -}}
{{- $tag := required "images.dify.tag is required: the Dify release tag, e.g. --set images.dify.tag=1.13.3" .Values.images.dify.tag -}}
{{- $v := .Values.images.dify.version | default $tag | trimPrefix "v" -}}
{{- if not (regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+([-+].*)?$" $v) -}}
{{- fail (printf "images.dify.tag %q is not a Dify version: set images.dify.version to the version it contains, e.g. 1.13.3" $tag) -}}
{{- end -}}
{{- $v -}}
{{- end -}}

{{/* "true" when the Dify version is at least .min (pre-release builds of a version count as that version). */}}
{{- define "dify.atLeast" -}}
{{- if semverCompare (printf ">=%s-0" .min) (include "dify.version" .root) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the api-websocket component runs: collaboration.enabled, or by default from Dify 1.14 (where Dify's
own default turns it on). */}}
{{- define "dify.collaboration" -}}
{{- $on := .Values.collaboration.enabled -}}
{{- if eq (toString $on) "" }}{{ $on = include "dify.atLeast" (dict "root" . "min" "1.14.0") }}{{ end -}}
{{- if $on }}true{{ end -}}
{{- end -}}

{{/* ws(s)://host/path: where browsers open the collaboration WebSocket. */}}
{{- define "dify.socketUrl" -}}
{{- include "dify.publicUrl" . | replace "https://" "wss://" | replace "http://" "ws://" -}}
{{- end -}}

{{/* "true" when the Agent node runtime (agent-backend, local-sandbox, agent SSRF proxy) is deployed. */}}
{{- define "dify.agent" -}}{{ if .Values.agent.enabled }}true{{ end }}{{- end -}}

{{- define "dify.v1" -}}{{ include "dify.atLeast" (dict "root" . "min" "1.0.0") }}{{- end -}}

{{/* Pinned companion images per Dify minor, newest row first; a row applies from its version up.
Rows before 1.13 reuse the 1.13.3 pins (the oldest 1.x read from Dify's compose file). */}}
{{- define "dify.pinTable" -}}
- {from: "1.17.1", sandbox: "0.2.15", pluginDaemon: "0.6.10-local", weaviate: "1.39.2"}
- {from: "1.17.0", sandbox: "0.2.15", pluginDaemon: "0.6.10-local", weaviate: "1.27.0"}
- {from: "1.15.0", sandbox: "0.2.15", pluginDaemon: "0.6.3-local", weaviate: "1.27.0"}
- {from: "1.14.0", sandbox: "0.2.15", pluginDaemon: "0.6.1-local", weaviate: "1.27.0"}
- {from: "1.0.0", sandbox: "0.2.14", pluginDaemon: "0.5.3-local", weaviate: "1.27.0"}
- {from: "0.0.0", sandbox: "0.2.10", pluginDaemon: "", weaviate: "1.19.0"}
{{- end -}}

{{/* The pinned tag of .key ("sandbox", "pluginDaemon", "weaviate") for this Dify version. */}}
{{- define "dify.pinned" -}}
{{- $v := include "dify.version" .root -}}
{{- $found := "" -}}
{{- range (include "dify.pinTable" .root | fromYamlArray) -}}
{{- if and (not $found) (semverCompare (printf ">=%s-0" .from) $v) -}}{{- $found = index . $.key -}}{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}

{{/* ---- images ---- */}}

{{/* The dify-gitops project's build of Dify's web for the path /dify (NEXT_PUBLIC_BASE_PATH=/dify), published as
<this>:<Dify version> for the Dify versions of the chart's table. */}}
{{- define "dify.projectWebRepository" -}}ghcr.io/dify-gitops/dify-web{{- end -}}
{{- define "dify.projectWebPath" -}}/dify{{- end -}}

{{/* Who provides the web image: "own" (images.web.repository), "stock" (Dify's, root path) or "project" (the
project's /dify build). Fails for a path no default image serves. */}}
{{- define "dify.webSource" -}}
{{- $base := include "dify.basePath" . -}}
{{- if .Values.images.web.repository -}}own
{{- else if not $base -}}stock
{{- else if eq $base (include "dify.projectWebPath" .) -}}project
{{- else -}}
{{- fail (printf "expose.path %q needs a web image built for that path, and none is published for it (Dify's stock web image serves \"/\" only, %s serves %s only). Build one with the web-image workflow (NEXT_PUBLIC_BASE_PATH=%s, see the chart README, \"Serving under a path\") and set images.web.repository and images.web.tag to it, or use expose.path=%s" $base (include "dify.projectWebRepository" .) (include "dify.projectWebPath" .) $base (include "dify.projectWebPath" .)) -}}
{{- end -}}
{{- end -}}

{{/* Image reference of a component: .component in api, web, sandbox, pluginDaemon, ssrfProxy, test; worker,
beat and migration run the api image. */}}
{{- define "dify.image" -}}
{{- $component := .component -}}
{{- if has $component (list "worker" "beat" "migration") }}{{ $component = "api" }}{{ end -}}
{{- $img := index .root.Values.images $component -}}
{{- $repo := $img.repository -}}
{{- $tag := $img.tag -}}
{{- $suffixes := dict "api" "api" "web" "web" "agentBackend" "agent-backend" "agentLocalSandbox" "agent-local-sandbox" -}}
{{- if and (eq $component "web") (eq (include "dify.webSource" .root) "project") -}}
{{- /* Tagged with the Dify version, whatever form images.dify.tag takes (v-prefixed, a digest). */ -}}
{{- $repo = include "dify.projectWebRepository" .root -}}
{{- $tag = $tag | default (include "dify.version" .root) -}}
{{- else if hasKey $suffixes $component -}}
{{- $prefix := required "images.dify.repository is required: the prefix of the Dify images, e.g. --set images.dify.repository=langgenius/dify" .root.Values.images.dify.repository -}}
{{- $repo = $repo | default (printf "%s-%s" $prefix (get $suffixes $component)) -}}
{{- $tag = $tag | default .root.Values.images.dify.tag -}}
{{- else if has $component (list "sandbox" "pluginDaemon") -}}
{{- $tag = $tag | default (include "dify.pinned" (dict "root" .root "key" $component)) -}}
{{- end -}}
{{- if hasPrefix "sha256:" $tag -}}{{ printf "%s@%s" $repo $tag }}{{- else -}}{{ printf "%s:%s" $repo $tag }}{{- end -}}
{{- end -}}

{{- define "dify.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---- URLs ---- */}}

{{/* expose.path normalised: "" for the root path, else "/dify" style (no trailing slash). */}}
{{- define "dify.basePath" -}}
{{- $p := required "expose.path is required: the public path, \"/\" or e.g. /dify" .Values.expose.path -}}
{{- if not (regexMatch "^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$" $p) -}}
{{- fail (printf "expose.path %q must be \"/\" or start with \"/\" and have no trailing slash, e.g. /dify" $p) -}}
{{- end -}}
{{- if ne $p "/" }}{{ $p }}{{ end -}}
{{- end -}}

{{/* scheme://host[/path]: the public URL every Dify URL variable starts with. */}}
{{- define "dify.publicUrl" -}}
{{- $scheme := required "external.scheme is required: http or https" .Values.external.scheme -}}
{{- $host := required "external.host is required: the host or load-balancer IP browsers use" .Values.external.host -}}
{{- printf "%s://%s%s" $scheme $host (include "dify.basePath" .) -}}
{{- end -}}

{{/* In-cluster URL of a component's Service. */}}
{{- define "dify.internalUrl" -}}
{{- printf "http://%s:%v" (include "dify.componentName" .) .port -}}
{{- end -}}

{{/* ---- secrets ---- */}}

{{/* Secret with the values given at install: SECRET_KEY and the optional OpenAI key. */}}
{{- define "dify.userSecretName" -}}{{ include "dify.fullname" . }}{{- end -}}

{{/* Secret with the internal keys: generated and kept by the chart, or the one named in secrets.existingSecret. */}}
{{- define "dify.internalSecretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-internal" (include "dify.fullname" .)) -}}
{{- end -}}

{{/* An env var read from a Secret key: dict name secret key. */}}
{{- define "dify.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/* ---- data store coordinates (bundled or external) ---- */}}

{{- define "dify.db.host" -}}
{{- if .Values.postgresql.enabled }}{{ include "dify.componentName" (dict "root" . "component" "postgresql") }}{{ else }}{{ .Values.externalDatabase.host }}{{ end -}}
{{- end -}}
{{- define "dify.db.port" -}}{{ ternary 5432 .Values.externalDatabase.port .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.user" -}}{{ ternary .Values.postgresql.username .Values.externalDatabase.username .Values.postgresql.enabled }}{{- end -}}
{{- define "dify.db.name" -}}{{ ternary .Values.postgresql.database .Values.externalDatabase.database .Values.postgresql.enabled }}{{- end -}}
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

{{/* ---- pod building blocks ---- */}}

{{/* Pod security context: PSA "restricted" defaults for a uid, merged under the component's override. */}}
{{- define "dify.podSecurityContext" -}}
{{- $base := dict "runAsNonRoot" true "runAsUser" .uid "runAsGroup" .uid "fsGroup" .uid "fsGroupChangePolicy" "OnRootMismatch" "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $base (deepCopy (.override | default dict))) -}}
{{- end -}}

{{- define "dify.containerSecurityContext" -}}
{{- $base := dict "allowPrivilegeEscalation" false "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $base (deepCopy (.override | default dict))) -}}
{{- end -}}

{{/* Scheduling fields shared by every component: dict values. */}}
{{- define "dify.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* True when api and worker share a ReadWriteOnce files volume and must therefore run on one node. */}}
{{- define "dify.filesColocated" -}}
{{- if and (eq .Values.storage.files.type "pvc") (eq .Values.storage.files.accessMode "ReadWriteOnce") }}true{{ end -}}
{{- end -}}

{{/* Affinity for api and worker: the user's, or (RWO files volume) to the node of any pod mounting it. The rule
matches the pod itself, so the first such pod schedules anywhere and the others follow it. */}}
{{- define "dify.filesAffinity" -}}
{{- $c := required (printf "dify.filesAffinity: no values for %s" .component) (index .root.Values .component) -}}
{{- if $c.affinity -}}
affinity: {{- toYaml $c.affinity | nindent 2 }}
{{- else if include "dify.filesColocated" .root -}}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            app.kubernetes.io/instance: {{ .root.Release.Name }}
            dify.gitops/files-volume: "true"
{{- end -}}
{{- end -}}

{{/* Pod spec fields every Dify pod shares. Service links off: a Service named like "dify" would inject DIFY_*
variables that Dify's entrypoints read. */}}
{{- define "dify.podCommon" -}}
serviceAccountName: {{ include "dify.fullname" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- include "dify.imagePullSecrets" . }}
{{- end -}}

{{/* ---- routing ---- */}}

{{/* Name of the StripPrefix Middleware; empty when Dify is served at the root path (nothing to strip). */}}
{{- define "dify.stripMiddleware" -}}
{{- if include "dify.basePath" . }}{{ include "dify.componentName" (dict "root" . "component" "strip-prefix") }}{{ end -}}
{{- end -}}

{{/* Annotations of an Ingress: dict root strip. Each Ingress path becomes its own Traefik router; the annotations
apply to all of them. */}}
{{- define "dify.ingressAnnotations" -}}
{{- $root := .root -}}
{{- $scheme := required "external.scheme is required: http or https" $root.Values.external.scheme -}}
{{- if not (has $scheme (list "http" "https")) -}}{{ fail (printf "external.scheme must be http or https, not %q" $scheme) }}{{- end -}}
{{- $a := dict -}}
{{- if eq $scheme "https" -}}
{{- /* NKP's Traefik redirects web to websecure; routers must live on the TLS entrypoint. */ -}}
{{- $_ := set $a "traefik.ingress.kubernetes.io/router.entrypoints" "websecure" -}}
{{- $_ := set $a "traefik.ingress.kubernetes.io/router.tls" "true" -}}
{{- end -}}
{{- if and .strip (include "dify.stripMiddleware" $root) -}}
{{- $_ := set $a "traefik.ingress.kubernetes.io/router.middlewares" (printf "%s-%s@kubernetescrd" $root.Release.Namespace (include "dify.stripMiddleware" $root)) -}}
{{- end -}}
{{- $a = merge $a $root.Values.expose.annotations -}}
{{- with $a }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* One Ingress: dict root component (Service) port name strip paths (list of [path pathType]). */}}
{{- define "dify.ingress" -}}
{{- $root := .root -}}
{{- $annotations := include "dify.ingressAnnotations" . -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "dify.componentName" (dict "root" $root "component" .name) }}
  labels: {{- include "dify.labels" (dict "root" $root "component" .component) | nindent 4 }}
  {{- with $annotations }}
  annotations: {{- . | nindent 4 }}
  {{- end }}
spec:
  ingressClassName: {{ required "expose.ingressClassName is required: the IngressClass serving Dify, e.g. the cluster's Traefik class" $root.Values.expose.ingressClassName | quote }}
  rules:
    - http:
        paths:
          {{- range .paths }}
          - path: {{ index . 0 | quote }}
            pathType: {{ index . 1 }}
            backend:
              service:
                name: {{ include "dify.componentName" (dict "root" $root "component" $.component) }}
                port: {number: {{ $.port }}}
          {{- end }}
      {{- if $root.Values.expose.matchHost }}
      host: {{ $root.Values.external.host | quote }}
      {{- end }}
{{- end -}}

{{/* ---- policies ---- */}}

{{/* A data store accepts connections on .ports only from this release's Dify pods. */}}
{{- define "dify.storeNetworkPolicy" -}}
{{- $c := dict "root" .root "component" .component -}}
{{- if .root.Values.networkPolicy.enabled -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  podSelector:
    matchLabels: {{- include "dify.selectorLabels" $c | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {{- include "dify.releasePodSelector" .root | nindent 14 }}
      ports:
        {{- range .ports }}
        - {port: {{ . }}, protocol: TCP}
        {{- end }}
{{- end -}}
{{- end -}}

{{/* maxUnavailable 1: voluntary evictions take one pod at a time and never block a drain of single replicas. */}}
{{- define "dify.pdb" -}}
{{- $c := dict "root" .root "component" .component -}}
{{- if .root.Values.podDisruptionBudget.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {{- include "dify.selectorLabels" $c | nindent 6 }}
{{- end -}}
{{- end -}}
