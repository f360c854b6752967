{{/* Pod building blocks: security contexts, scheduling, the fields every pod shares, and the skeleton of
every Deployment. */}}

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

{{/* The pod spec fields before the containers, the same for every workload: service account, security context,
scheduling. dict:
  root, component
  uid            the uid (and gid) the pod runs as
  note           why that uid or that exception (rendered as a comment above securityContext)
  override       security context fields of the component's own, under the user's values.podSecurityContext
  values         the component's values: podSecurityContext and scheduling (absent for components without them)
  filesAffinity  api and worker: follow the files volume's node (dify.filesAffinity) instead of values.affinity
  restartPolicy  for Jobs and bare Pods */}}
{{- define "dify.podHead" -}}
{{- $values := .values | default dict -}}
{{- $override := mergeOverwrite (deepCopy (.override | default dict)) (deepCopy ($values.podSecurityContext | default dict)) -}}
{{ include "dify.podCommon" .root }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- with .note }}
{{- range splitList "\n" . }}
# {{ . }}
{{- end }}
{{- end }}
securityContext: {{- include "dify.podSecurityContext" (dict "uid" .uid "override" $override) | nindent 2 }}
{{- if .filesAffinity }}
{{- with include "dify.filesAffinity" (dict "root" .root "component" .component) }}
{{ . }}
{{- end }}
{{- $values = omit $values "affinity" }}
{{- end }}
{{- include "dify.scheduling" $values }}
{{- end -}}

{{/* The skeleton of every Deployment; each template keeps only its containers and volumes (the define named in
.containers, rendered with the root context, indented for the pod spec). dict, besides dify.podHead's:
  replicas      default 1
  replicasNote  why that many (a comment above replicas)
  recreate      stop the old pod before the new one starts (one scheduler, or a ReadWriteOnce volume)
  checksum      [kind, template]: roll the pods when that template's output changes (checksum/<kind>) */}}
{{- define "dify.deployment" -}}
{{- $root := .root -}}
{{- $c := dict "root" $root "component" .component -}}
{{- $values := .values | default dict -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  {{- with .replicasNote }}
  # {{ . }}
  {{- end }}
  replicas: {{ .replicas | default 1 }}
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels: {{- include "dify.selectorLabels" $c | nindent 6 }}
  template:
    metadata:
      labels: {{- include "dify.selectorLabels" $c | nindent 8 }}
        {{- if and .filesAffinity (include "dify.filesColocated" $root) }}
        dify.gitops/files-volume: "true"
        {{- end }}
      {{- if or .checksum $values.podAnnotations }}
      annotations:
        {{- with .checksum }}
        checksum/{{ index . 0 }}: {{ include (print $root.Template.BasePath "/" (index . 1)) $root | sha256sum }}
        {{- end }}
        {{- with $values.podAnnotations }}{{ toYaml . | nindent 8 }}{{ end }}
      {{- end }}
    spec:
      {{- include "dify.podHead" . | nindent 6 }}
      {{- include .containers $root }}
{{- end -}}
