{{/* Names and labels of the objects. Every helper of the chart is prefixed "dify." so that the library
subcharts (which call some of them) never clash. */}}

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

{{/* Secret with the values given at install: SECRET_KEY and the optional OpenAI key. */}}
{{- define "dify.userSecretName" -}}{{ include "dify.fullname" . }}{{- end -}}

{{/* Secret with the internal keys: generated and kept by the chart, or the one named in secrets.existingSecret. */}}
{{- define "dify.internalSecretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-internal" (include "dify.fullname" .)) -}}
{{- end -}}
