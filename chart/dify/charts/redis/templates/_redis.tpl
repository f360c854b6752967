{{/* Redis on the official image, append-only file on a volume. Called by the parent with its root context. */}}

{{- define "dify-redis.statefulset" -}}
{{- $c := dict "root" . "component" "redis" -}}
{{- $v := .Values.redis -}}
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
      {{- include "dify.podHead" (dict "root" . "component" "redis" "values" $v "uid" 999 "override" (dict "runAsGroup" 1000 "fsGroup" 1000) "note" "uid 999 / gid 1000 are \"redis\" in the alpine image.") | nindent 6 }}
      containers:
        - name: redis
          image: {{ printf "%s:%s" $v.image.repository $v.image.tag }}
          imagePullPolicy: {{ .Values.images.pullPolicy }}
          # $(REDIS_PASSWORD) is expanded by the kubelet: the pod spec never holds the password.
          args: [redis-server, --requirepass, $(REDIS_PASSWORD), --appendonly, "yes", --dir, /data]
          env:
            {{- include "dify.secretEnv" (dict "name" "REDIS_PASSWORD" "secret" (include "dify.internalSecretName" .) "key" "redis-password") | nindent 12 }}
          ports:
            - {name: redis, containerPort: 6379, protocol: TCP}
          readinessProbe:
            exec: {command: [sh, -c, 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG']}
            periodSeconds: 10
          livenessProbe:
            exec: {command: [sh, -c, 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG']}
            initialDelaySeconds: 20
            periodSeconds: 30
            timeoutSeconds: 5
            failureThreshold: 6
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- include "dify.containerSecurityContext" dict | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /data}
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

{{- define "dify-redis.service" -}}
{{- $c := dict "root" . "component" "redis" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  type: ClusterIP
  selector: {{- include "dify.selectorLabels" $c | nindent 4 }}
  ports:
    - {name: redis, port: 6379, targetPort: redis, protocol: TCP}
{{- end -}}
