{{/* Weaviate on the official image with API-key authentication. Called by the parent with its root context. */}}

{{/* The running Weaviate's version ("" on first install or without a cluster), read from the live StatefulSet. */}}
{{- define "dify-weaviate.liveTag" -}}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "dify.componentName" (dict "root" . "component" "weaviate")) -}}
{{- if $live }}{{ last (splitList ":" (index $live.spec.template.spec.containers 0).image) }}{{ end -}}
{{- end -}}

{{/* Image tag: weaviate.image.tag when set; else the running one (Weaviate is upgraded only on request, since
its data migrates one minor at a time); else, on first install, the parent's pin for this Dify version. */}}
{{- define "dify-weaviate.tag" -}}
{{- .Values.weaviate.image.tag | default (include "dify-weaviate.liveTag" .) | default (include "dify.pinned" (dict "root" . "key" "weaviate")) -}}
{{- end -}}

{{/* Refuse a requested tag that skips a minor version (or goes back) on data an earlier release wrote, and say
how to step. */}}
{{- define "dify-weaviate.checkUpgrade" -}}
{{- $old := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" (include "dify-weaviate.liveTag" .) -}}
{{- $new := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" (include "dify-weaviate.tag" .) -}}
{{- if and $old $new -}}
{{- $o := semver $old -}}{{- $n := semver $new -}}
{{- if or (ne $o.Major $n.Major) (gt (sub $n.Minor $o.Minor) 1) (lt $n.Minor $o.Minor) -}}
{{- fail (printf "weaviate: the volume holds Weaviate %s data and %s would skip or revert minor versions, which Weaviate cannot migrate. Upgrade one minor at a time: set weaviate.image.tag to the next minor (%d.%d.x), upgrade, and repeat; or set weaviate.image.tag=%s to stay." $old $new $o.Major (add $o.Minor 1) $old) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dify-weaviate.statefulset" -}}
{{- include "dify-weaviate.checkUpgrade" . -}}
{{- $c := dict "root" . "component" "weaviate" -}}
{{- $v := .Values.weaviate -}}
{{- $internal := include "dify.internalSecretName" . -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  replicas: 1
  serviceName: {{ include "dify.componentName" $c }}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}
  selector:
    matchLabels: {{- include "dify.selectorLabels" $c | nindent 6 }}
  template:
    metadata:
      labels: {{- include "dify.selectorLabels" $c | nindent 8 }}
    spec:
      {{- include "dify.podHead" (dict "root" . "component" "weaviate" "values" $v "uid" 1000 "note" "The image runs as root by default but needs nothing root-only: any uid owning the data volume works.") | nindent 6 }}
      containers:
        - name: weaviate
          image: {{ printf "%s:%s" $v.image.repository (include "dify-weaviate.tag" .) }}
          imagePullPolicy: {{ .Values.images.pullPolicy }}
          env:
            - {name: PERSISTENCE_DATA_PATH, value: /var/lib/weaviate}
            - {name: QUERY_DEFAULTS_LIMIT, value: "25"}
            - {name: DEFAULT_VECTORIZER_MODULE, value: none}
            - {name: CLUSTER_HOSTNAME, value: node1}
            - {name: DISABLE_TELEMETRY, value: "true"}
            - {name: AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED, value: "false"}
            - {name: AUTHENTICATION_APIKEY_ENABLED, value: "true"}
            {{- include "dify.secretEnv" (dict "name" "AUTHENTICATION_APIKEY_ALLOWED_KEYS" "secret" $internal "key" "weaviate-api-key") | nindent 12 }}
            - {name: AUTHENTICATION_APIKEY_USERS, value: dify}
            - {name: AUTHORIZATION_ADMINLIST_ENABLED, value: "true"}
            - {name: AUTHORIZATION_ADMINLIST_USERS, value: dify}
          ports:
            - {name: http, containerPort: 8080, protocol: TCP}
            - {name: grpc, containerPort: 50051, protocol: TCP}
          startupProbe:
            httpGet: {path: /v1/.well-known/live, port: http}
            periodSeconds: 5
            failureThreshold: 120
          readinessProbe:
            httpGet: {path: /v1/.well-known/ready, port: http}
            periodSeconds: 10
          livenessProbe:
            httpGet: {path: /v1/.well-known/live, port: http}
            periodSeconds: 30
            failureThreshold: 6
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- include "dify.containerSecurityContext" dict | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /var/lib/weaviate}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels: {{- include "dify.selectorLabels" $c | nindent 10 }}
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: {{ include "dify.required" (dict "root" . "key" "storage.storageClassName") | quote }}
        resources:
          requests:
            storage: {{ $v.size }}
{{- end -}}

{{- define "dify-weaviate.service" -}}
{{- $c := dict "root" . "component" "weaviate" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  type: ClusterIP
  selector: {{- include "dify.selectorLabels" $c | nindent 4 }}
  ports:
    - {name: http, port: 8080, targetPort: http, protocol: TCP}
    - {name: grpc, port: 50051, targetPort: grpc, protocol: TCP}
{{- end -}}
