{{/* Names: "trustgate" for a release called trustgate, else RELEASE-trustgate. */}}
{{- define "trustgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trustgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object (not on the pod template: see selectorLabels). */}}
{{- define "trustgate.labels" -}}
app.kubernetes.io/name: {{ include "trustgate.name" . }}
app.kubernetes.io/part-of: trustgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The webhook pods: the same labels as deploy/base, so selectors agree. */}}
{{- define "trustgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trustgate.name" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "trustgate.tlsSecret" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.existingSecret is required with certificates.mode=secret" .Values.certificates.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "trustgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* image: REPO@DIGEST when a digest is given (checked), else REPO:TAG. */}}
{{- define "trustgate.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $img.digest) -}}
{{- fail (printf "image.digest %q: want sha256: and 64 lower-case hex digits" $img.digest) -}}
{{- end -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The policy with the release namespace added to exemptNamespaces; a
string (--set-file policy=FILE) is used as it is. */}}
{{- define "trustgate.policy" -}}
{{- if kindIs "string" .Values.policy -}}
{{- .Values.policy -}}
{{- else -}}
{{- $p := deepCopy .Values.policy -}}
{{- $ex := default (list) $p.exemptNamespaces -}}
{{- if not (has .Release.Namespace $ex) -}}
{{- $ex = append $ex .Release.Namespace -}}
{{- end -}}
{{- $_ := set $p "exemptNamespaces" $ex -}}
{{- if not $p.verifiers -}}{{- $_ := unset $p "verifiers" -}}{{- end -}}
{{- toYaml $p -}}
{{- end -}}
{{- end -}}

{{/* One webhook entry; args: dict root, name, path. */}}
{{- define "trustgate.webhook" -}}
- name: {{ .name }}
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  matchPolicy: Equivalent
  timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
  {{- if .mutating }}
  # Another mutating webhook may add or change an image after trustgate ran;
  # run again so that image is pinned too.
  reinvocationPolicy: IfNeeded
  {{- end }}
  clientConfig:
    service:
      name: {{ include "trustgate.fullname" .root }}
      namespace: {{ .root.Release.Namespace }}
      path: {{ .path }}
      port: 443
    {{- with .caBundle }}
    caBundle: {{ . }}
    {{- end }}
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [{{ .root.Release.Namespace | quote }}, "kube-system"]
    # Emergency exit: `kubectl label ns NS trustgate.dev/exempt=true`.
    - key: trustgate.dev/exempt
      operator: DoesNotExist
    {{- with .root.Values.webhook.extraNamespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods", "replicationcontrollers"]
    operations: ["CREATE", "UPDATE"]
    scope: Namespaced
  - apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods/ephemeralcontainers"]
    operations: ["UPDATE"]
    scope: Namespaced
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
    operations: ["CREATE", "UPDATE"]
    scope: Namespaced
  - apiGroups: ["batch"]
    apiVersions: ["v1"]
    resources: ["jobs", "cronjobs"]
    operations: ["CREATE", "UPDATE"]
    scope: Namespaced
{{- end -}}
