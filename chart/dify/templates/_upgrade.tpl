{{/* Upgrades across Dify versions: which version is installed, whether this upgrade changes it, the 0.x -> 1.x
guard and the pre-upgrade backup's script. Templates cannot read the installed release's values, so the chart
records the Dify version in a ConfigMap (version-configmap.yaml) and reads it back with lookup. lookup answers
nothing under `helm template` and on install: nothing is installed then, and no check applies. */}}

{{/* The installed Dify image tag and version as YAML {tag, version}, or nothing (install, `helm template`). A release
of a chart older than the ConfigMap gives its version only: the app.kubernetes.io/version label every object of
it carries, read from the ServiceAccount. */}}
{{- define "dify.installed" -}}
{{- if .Release.IsUpgrade -}}
{{- $cm := lookup "v1" "ConfigMap" .Release.Namespace (include "dify.componentName" (dict "root" . "component" "version")) -}}
{{- if and $cm $cm.data -}}
{{- toYaml (dict "tag" ($cm.data.difyTag | default "") "version" ($cm.data.difyVersion | default "")) -}}
{{- else -}}
{{- $sa := lookup "v1" "ServiceAccount" .Release.Namespace (include "dify.fullname" .) -}}
{{- $version := dig "metadata" "labels" "app.kubernetes.io/version" "" ($sa | default dict) -}}
{{- if $version }}{{ toYaml (dict "tag" "" "version" $version) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The installed Dify tag (or version, where only that is recorded) when this upgrade changes it, else nothing. */}}
{{- define "dify.versionChangeFrom" -}}
{{- $old := include "dify.installed" . | fromYaml -}}
{{- if $old -}}
{{- if $old.tag -}}
{{- if ne $old.tag (toString .Values.images.dify.tag) }}{{ $old.tag }}{{ end -}}
{{- else if and $old.version (ne $old.version (include "dify.version" .)) -}}
{{- $old.version -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Dify 1.0 turned models and tools into plugins: data of a 0.x install needs Dify's plugin migration commands.
Refuse the upgrade until upgrade.acknowledgePluginMigration says they are planned. */}}
{{- define "dify.preflightUpgrade" -}}
{{- if .Values.backup.enabled }}
{{- $_ := include "dify.backupImage" . -}}
{{- if and (eq (include "dify.backupTarget" .) "s3") (ne .Values.storage.files.type "s3") -}}
{{- fail "backup.target=s3 writes the backups to the files store of storage.files.s3, which needs storage.files.type=s3: set storage.files.type=s3 with its endpoint, bucket and existingSecret, or leave backup.target empty or set it to pvc" -}}
{{- end -}}
{{- end -}}
{{- $old := include "dify.installed" . | fromYaml -}}
{{- $oldVersion := regexFind "^v?[0-9]+\\.[0-9]+\\.[0-9]+" (($old | default dict).version | default "") | trimPrefix "v" -}}
{{- if and $oldVersion (semverCompare "<1.0.0-0" $oldVersion) (include "dify.v1" .) (not .Values.upgrade.acknowledgePluginMigration) -}}
{{- fail (printf "this upgrade moves the installed Dify %s to %s, across Dify 1.0, which turned models and tools into plugins. Dify documents a plugin migration for it (Dify 1.0.0 release notes, \"Plugin Migration\"): after the upgrade, in the api pod (kubectl -n %s exec deploy/%s -- ...), run `flask extract-plugins --workers=20`, `flask install-plugins --workers=2` and `flask migrate-data-for-plugin`; the chart's migration Job runs `flask db upgrade` itself. Set upgrade.acknowledgePluginMigration=true to go ahead (backup.enabled dumps PostgreSQL first), or keep images.dify.tag at %s" $oldVersion (include "dify.version" .) .Release.Namespace (include "dify.componentName" (dict "root" . "component" "api")) ($old.tag | default $oldVersion)) -}}
{{- end -}}
{{- end -}}

{{/* The image of the backup Job: backup.image, its empty tag meaning the bundled PostgreSQL's image. */}}
{{- define "dify.backupImage" -}}
{{- $img := .Values.backup.image -}}
{{- if $img.tag -}}{{ printf "%s:%s" $img.repository $img.tag }}
{{- else if .Values.postgresql.enabled -}}{{ printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag }}
{{- else -}}
{{- fail "backup.image.tag is required with an external database (postgresql.enabled=false and backup.enabled=true): a postgres image whose pg_dump is at least the server's major version, e.g. backup.image.tag=16-alpine for PostgreSQL 16; or set backup.enabled=false to upgrade without a dump" -}}
{{- end -}}
{{- end -}}

{{/* Where the pre-upgrade backup goes: backup.target, its empty value following storage.files.type. */}}
{{- define "dify.backupTarget" -}}
{{- .Values.backup.target | default (ternary "s3" "pvc" (eq .Values.storage.files.type "s3")) -}}
{{- end -}}

{{/* The key prefix of the backups in the S3 store: backup.s3.prefix, or dify-backups/<namespace>/<fullname> so that
releases sharing a bucket never prune each other's backups. */}}
{{- define "dify.backupS3Prefix" -}}
{{- .Values.backup.s3.prefix | default (printf "dify-backups/%s/%s" .Release.Namespace (include "dify.fullname" .)) | trimAll "/" -}}
{{- end -}}

{{/* The container that dumps the databases into /backup with dify.backupScript (dict root name label keep): the
backup Job's only container on a volume, its init container before an upload to S3. */}}
{{- define "dify.backupDumpContainer" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "dify.backupImage" $root }}
  imagePullPolicy: {{ $root.Values.images.pullPolicy }}
  command:
    - sh
    - -c
    - |
      {{- include "dify.backupScript" $root | nindent 6 }}
  env:
    - {name: BACKUP_DIR, value: /backup}
    - {name: BACKUP_KEEP, value: {{ .keep | quote }}}
    - {name: BACKUP_LABEL, value: {{ .label | quote }}}
    - {name: DATABASES, value: {{ printf "%s %s" (include "dify.db.name" $root) (include "dify.db.pluginName" $root) | quote }}}
    - {name: PGHOST, value: {{ include "dify.db.host" $root | quote }}}
    - {name: PGPORT, value: {{ include "dify.db.port" $root | quote }}}
    - {name: PGUSER, value: {{ include "dify.db.user" $root | quote }}}
    - {name: PGSSLMODE, value: {{ include "dify.db.sslMode" $root | quote }}}
    - {name: PGCONNECT_TIMEOUT, value: "10"}
    {{- include "dify.db.passwordEnv" (dict "root" $root "name" "PGPASSWORD") | nindent 4 }}
  resources: {{- toYaml $root.Values.backup.resources | nindent 4 }}
  securityContext: {{- include "dify.containerSecurityContext" dict | nindent 4 }}
  volumeMounts:
    - {name: backup, mountPath: /backup}
{{- end -}}

{{/* The backup volume's name. */}}
{{- define "dify.backupVolume" -}}{{ include "dify.componentName" (dict "root" . "component" "backup") }}{{- end -}}

{{/* The backup Job's script: POSIX sh for the postgres image (busybox) and Debian alike. Reads PG* (libpq; the
password only as PGPASSWORD), DATABASES (space-separated: the first must exist, another is skipped while absent,
as the plugin daemon's before Dify 1.0), BACKUP_DIR, BACKUP_KEEP and BACKUP_LABEL. Each dump goes into
<dir>/<UTC time>-<label>.partial/ and is renamed to <UTC time>-<label>/ only after every database was dumped and
reads back as an archive, so a failed or killed run never leaves a dump that looks complete; only complete ones
count towards BACKUP_KEEP. */}}
{{- define "dify.backupScript" -}}
set -eu
: "${BACKUP_DIR:?}" "${BACKUP_KEEP:?}" "${BACKUP_LABEL:?}" "${DATABASES:?}"
name="$(date -u +%Y%m%dT%H%M%SZ)-$BACKUP_LABEL"
dir="$BACKUP_DIR/$name"
tmp="$dir.partial"
finish() {
  rc=$?
  rm -rf "$tmp"
  if [ "$rc" -ne 0 ]; then
    echo "backup: FAILED (exit $rc); no dump was kept and the upgrade must not go on" >&2
  fi
  exit "$rc"
}
trap finish EXIT
# What a killed run left half-written.
rm -rf "$BACKUP_DIR"/*.partial
if [ -e "$dir" ]; then
  echo "backup: $dir exists already" >&2
  exit 1
fi
mkdir -p "$tmp"
for db in $DATABASES; do
  # Connected to the first database, which must exist; another one may not exist yet.
  found=$(echo "SELECT 1 FROM pg_database WHERE datname = :'db'" | psql -X -q -t -A -v ON_ERROR_STOP=1 -v db="$db" -d "${DATABASES%% *}")
  if [ "$found" != 1 ]; then
    echo "backup: database $db does not exist, skipped"
    continue
  fi
  pg_dump -Fc -d "$db" -f "$tmp/$db.dump"
  pg_restore --list "$tmp/$db.dump" >/dev/null
  echo "backup: $db: $(wc -c <"$tmp/$db.dump") bytes"
done
mv "$tmp" "$dir"
echo "backup: complete: $dir"
# Complete dumps only, newest first (the names start with their UTC time); keep BACKUP_KEEP of them.
ls -1 "$BACKUP_DIR" | grep -E '^[0-9]{8}T[0-9]{6}Z-' | grep -v '\.partial$' | sort -r | tail -n +"$((BACKUP_KEEP + 1))" |
  while read -r old; do
    rm -rf "${BACKUP_DIR:?}/$old"
    echo "backup: removed the older dump $old"
  done
{{- end -}}
