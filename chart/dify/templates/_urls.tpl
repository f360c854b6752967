{{/* Addresses: the public URL browsers use, the path it is served under, and in-cluster Service URLs. */}}

{{/* expose.path normalised: "" for the root path, else "/dify" style (no trailing slash). */}}
{{- define "dify.basePath" -}}
{{- $p := include "dify.required" (dict "root" . "key" "expose.path") -}}
{{- if not (regexMatch "^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$" $p) -}}
{{- fail (printf "expose.path %q must be \"/\" or start with \"/\" and have no trailing slash, e.g. /dify" $p) -}}
{{- end -}}
{{- if ne $p "/" }}{{ $p }}{{ end -}}
{{- end -}}

{{/* scheme://host[/path]: the public URL every Dify URL variable starts with. */}}
{{- define "dify.publicUrl" -}}
{{- $scheme := include "dify.required" (dict "root" . "key" "external.scheme") -}}
{{- $host := include "dify.required" (dict "root" . "key" "external.host") -}}
{{- printf "%s://%s%s" $scheme $host (include "dify.basePath" .) -}}
{{- end -}}

{{/* In-cluster URL of a component's Service. */}}
{{- define "dify.internalUrl" -}}
{{- printf "http://%s:%v" (include "dify.componentName" .) .port -}}
{{- end -}}

{{/* ws(s)://host/path: where browsers open the collaboration WebSocket. */}}
{{- define "dify.socketUrl" -}}
{{- include "dify.publicUrl" . | replace "https://" "wss://" | replace "http://" "ws://" -}}
{{- end -}}

{{/* Name of the StripPrefix Middleware; empty when Dify is served at the root path (nothing to strip). */}}
{{- define "dify.stripMiddleware" -}}
{{- if include "dify.basePath" . }}{{ include "dify.componentName" (dict "root" . "component" "strip-prefix") }}{{ end -}}
{{- end -}}
