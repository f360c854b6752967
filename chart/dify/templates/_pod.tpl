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
