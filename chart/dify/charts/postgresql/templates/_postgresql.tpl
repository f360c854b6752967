{{/* PostgreSQL on the official image. Called by the parent with its root context: the storage class and the
password Secret are parent values a subchart could not see. */}}

{{- define "dify-postgresql.statefulset" -}}
{{- $c := dict "root" . "component" "postgresql" -}}
{{- $v := .Values.postgresql -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  replicas: 1
  serviceName: {{ include "dify.componentName" $c }}
  # Data outlives the release: uninstall and scale-down leave the claim in place.
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}
  selector:
    matchLabels: {{- include "dify.selectorLabels" $c | nindent 6 }}
  template:
    metadata:
      labels: {{- include "dify.selectorLabels" $c | nindent 8 }}
    spec:
      {{- include "dify.podHead" (dict "root" . "component" "postgresql" "values" $v "uid" 70 "note" "uid 70 is \"postgres\" in the alpine image; the entrypoint skips its root-only steps when started as it.") | nindent 6 }}
      containers:
        - name: postgresql
          image: {{ printf "%s:%s" $v.image.repository $v.image.tag }}
          imagePullPolicy: {{ .Values.images.pullPolicy }}
          env:
            - {name: POSTGRES_USER, value: {{ $v.username | quote }}}
            {{- include "dify.secretEnv" (dict "name" "POSTGRES_PASSWORD" "secret" (include "dify.internalSecretName" .) "key" "postgres-password") | nindent 12 }}
            - {name: POSTGRES_DB, value: {{ $v.database | quote }}}
            # A subdirectory: the volume root holds lost+found, which initdb refuses.
            - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}
          ports:
            - {name: postgresql, containerPort: 5432, protocol: TCP}
          startupProbe:
            exec: {command: [sh, -c, 'pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"']}
            periodSeconds: 5
            failureThreshold: 60
          readinessProbe:
            exec: {command: [sh, -c, 'pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"']}
            periodSeconds: 10
          livenessProbe:
            exec: {command: [sh, -c, 'pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"']}
            periodSeconds: 30
            timeoutSeconds: 5
            failureThreshold: 6
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- include "dify.containerSecurityContext" dict | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /var/lib/postgresql/data}
            - {name: run, mountPath: /var/run/postgresql}
            - {name: tmp, mountPath: /tmp}
      volumes:
        - {name: run, emptyDir: {}}
        - {name: tmp, emptyDir: {}}
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

{{- define "dify-postgresql.service" -}}
{{- $c := dict "root" . "component" "postgresql" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "dify.componentName" $c }}
  labels: {{- include "dify.labels" $c | nindent 4 }}
spec:
  type: ClusterIP
  selector: {{- include "dify.selectorLabels" $c | nindent 4 }}
  ports:
    - {name: postgresql, port: 5432, targetPort: postgresql, protocol: TCP}
{{- end -}}
