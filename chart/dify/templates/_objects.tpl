{{/* Builders of whole objects that several templates emit alike: Ingresses, data store NetworkPolicies and
PodDisruptionBudgets. */}}

apply to all of them. */}}
{{- define "dify.ingressAnnotations" -}}
{{- $root := .root -}}
{{- $scheme := include "dify.required" (dict "root" $root "key" "external.scheme") -}}
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
  ingressClassName: {{ include "dify.required" (dict "root" $root "key" "expose.ingressClassName") | quote }}
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

{{/* maxUnavailable 1: voluntary evictions take one pod at a time and never block a drain of single replicas.
podDisruptionBudget.enabled is checked here and only here: the *-pdb.yaml templates say only whether their
component exists. */}}
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
