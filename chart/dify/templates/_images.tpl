{{/* Image references: which repository and tag each component runs, and where pulls authenticate. */}}

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
{{- $prefix := include "dify.required" (dict "root" .root "key" "images.dify.repository") -}}
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
