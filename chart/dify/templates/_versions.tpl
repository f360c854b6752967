{{/* The Dify version, what it switches on, and the pinned companion images per Dify minor. The pin table
lives here alone: README.md, "Versions", mirrors it. */}}

{{/* The Dify version: images.dify.version when set (tags that are no version), else images.dify.tag. */}}
{{- define "dify.version" -}}
{{- $tag := include "dify.required" (dict "root" . "key" "images.dify.tag") -}}
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
