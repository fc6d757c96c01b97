{{/* Names: fullnameOverride, else the release name; the controller's objects add controller.name. */}}
{{- define "portico.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portico.controller.fullname" -}}
{{- $full := include "portico.fullname" . -}}
{{- if .Values.controller.name -}}
{{- printf "%s-%s" $full .Values.controller.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $full -}}
{{- end -}}
{{- end -}}

{{- define "portico.defaultBackend.fullname" -}}
{{- printf "%s-%s" (include "portico.fullname" .) .Values.defaultBackend.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portico.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portico.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object: deploy/base's two, and Helm's bookkeeping. */}}
{{- define "portico.labels" -}}
app.kubernetes.io/name: portico
app.kubernetes.io/part-of: portico
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "portico.selectorLabels" -}}
app.kubernetes.io/name: portico
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* registry/image:tag@digest, or repository:tag@digest. */}}
{{- define "portico.image" -}}
{{- $img := .image -}}
{{- $repo := $img.repository | default (printf "%s/%s" $img.registry $img.image) -}}
{{- $tag := $img.tag | default .default -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $repo $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
Value paths whose silent omission would be unsafe: the install stops with the reason.
*/}}
{{- define "portico.checks" -}}
{{- $c := .Values.controller -}}
{{- if or .Values.tcp .Values.udp $c.service.nodePorts.tcp $c.service.nodePorts.udp -}}
{{- fail "tcp/udp (and controller.service.nodePorts.tcp/udp): Portico forwards HTTP and HTTPS only, not raw TCP or UDP services; remove them, or keep ingress-nginx (or another proxy) for those ports" -}}
{{- end -}}
{{- if not (has $c.kind (list "Deployment" "DaemonSet")) -}}
{{- fail (printf "controller.kind: %q is not supported; use Deployment or DaemonSet" $c.kind) -}}
{{- end -}}
{{- if or (contains "ingress-nginx" ($c.image.image | toString)) (contains "ingress-nginx" ($c.image.repository | toString)) -}}
{{- fail "controller.image names ingress-nginx's controller image, which does not understand Portico's flags; drop controller.image.image/repository/tag/digest from the values to use Portico's image" -}}
{{- end -}}
{{- if $c.scope.namespaceSelector -}}
{{- fail "controller.scope.namespaceSelector: Portico cannot select namespaces by label and would watch every namespace; use controller.scope.enabled with controller.scope.namespace" -}}
{{- end -}}
{{- if and $c.hostNetwork $c.hostPort.enabled -}}
{{- fail "controller.hostNetwork and controller.hostPort.enabled: choose one (with hostNetwork the pod already listens on the node's ports)" -}}
{{- end -}}
{{- end -}}

{{/* Portico's flags that controller.extraArgs may set: those with a value, then switches. */}}
{{- define "portico.valueFlags" -}}
http-addr https-addr admin-addr metrics-addr controller-name ingress-class default-ssl-certificate default-backend-service global-auth-url configmap hsts hsts-max-age hsts-include-subdomains hsts-preload ssl-protocols ssl-ciphers proxy-protocol-header-timeout trusted-proxies shutdown-grace log-format access-log worker-threads client-header-timeout max-header-bytes max-headers max-connections tls-handshake-timeout tls-session-cache tls-session-timeout upstream-connect-timeout upstream-response-timeout h2-max-concurrent-streams h2-max-pending-resets watch-namespace publish-service publish-status-address election-id debounce https-redirect-port
{{- end -}}
{{- define "portico.switchFlags" -}}
watch-ingress-without-class use-proxy-protocol enable-ssl-passthrough allow-loopback-auth-url
{{- end -}}
{{/* ingress-nginx flags whose absence changes nothing a client can see: dropped. */}}
{{- define "portico.droppedFlags" -}}
v update-status-on-shutdown enable-annotation-validation enable-metrics profiling enable-topology-aware-routing shutdown-grace-period post-shutdown-grace-period stderrthreshold logtostderr
{{- end -}}

{{/* The container's args: the chart's own (unless extraArgs sets the same flag), then extraArgs. */}}
{{- define "portico.args" -}}
{{- $c := .Values.controller -}}
{{- $extra := $c.extraArgs | default dict -}}
{{- $ns := "$(POD_NAMESPACE)" -}}
{{- $own := list -}}
{{- $own = append $own (list "http-addr" (printf "0.0.0.0:%v" $c.containerPort.http)) -}}
{{- $own = append $own (list "https-addr" (printf "0.0.0.0:%v" $c.containerPort.https)) -}}
{{- $own = append $own (list "admin-addr" "127.0.0.1:10246") -}}
{{- $own = append $own (list "metrics-addr" (printf "0.0.0.0:%v" $c.metrics.port)) -}}
{{- if ne $c.ingressClassResource.controllerValue "portico.dev/ingress-controller" -}}
{{- $own = append $own (list "controller-name" $c.ingressClassResource.controllerValue) -}}
{{- end -}}
{{- if and $c.ingressClass (ne $c.ingressClass "portico") -}}
{{- $own = append $own (list "ingress-class" $c.ingressClass) -}}
{{- end -}}
{{- if $c.watchIngressWithoutClass -}}
{{- $own = append $own (list "watch-ingress-without-class" true) -}}
{{- end -}}
{{- if $c.scope.enabled -}}
{{- $own = append $own (list "watch-namespace" ($c.scope.namespace | default .Release.Namespace)) -}}
{{- end -}}
{{- if .Values.defaultBackend.enabled -}}
{{- $own = append $own (list "default-backend-service" (printf "%s/%s" $ns (include "portico.defaultBackend.fullname" .))) -}}
{{- end -}}
{{- if and $c.publishService.enabled $c.service.enabled -}}
{{- $svc := include "portico.controller.fullname" . -}}
{{- if and (not $c.service.external.enabled) $c.service.internal.enabled -}}
{{- $svc = printf "%s-internal" $svc -}}
{{- end -}}
{{- if or $c.publishService.pathOverride $c.service.external.enabled $c.service.internal.enabled -}}
{{- $own = append $own (list "publish-service" ($c.publishService.pathOverride | default (printf "%s/%s" $ns $svc))) -}}
{{- end -}}
{{- end -}}
{{- $own = append $own (list "election-id" ($c.electionID | default (printf "%s-leader" (include "portico.fullname" .)))) -}}
{{- $own = append $own (list "configmap" (printf "%s/%s" $ns (include "portico.controller.fullname" .))) -}}
{{- $own = append $own (list "log-format" "json") -}}
{{- $grace := max 0 (min 30 (sub (int $c.terminationGracePeriodSeconds) 15)) -}}
{{- $own = append $own (list "shutdown-grace" (printf "%ds" $grace)) -}}
{{- range $own }}
{{- if not (hasKey $extra (index . 0)) }}
{{- if eq (index . 1 | toString) "true" }}
- --{{ index . 0 }}
{{- else }}
- {{ printf "--%s=%v" (index . 0) (index . 1) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- $values := splitList " " (include "portico.valueFlags" .) -}}
{{- $switches := splitList " " (include "portico.switchFlags" .) -}}
{{- $dropped := splitList " " (include "portico.droppedFlags" .) -}}
{{- range $key, $value := $extra }}
{{- $v := $value | toString }}
{{- if has $key $switches }}
{{- if has $v (list "" "true" "<nil>") }}
- --{{ $key }}
{{- else if ne $v "false" }}
{{- fail (printf "controller.extraArgs.%s: %q; this switch takes true, false or nothing" $key $v) }}
{{- end }}
{{- else if has $key $values }}
{{- if has $v (list "" "<nil>") }}
{{- fail (printf "controller.extraArgs.%s needs a value" $key) }}
{{- end }}
- {{ printf "--%s=%s" $key $v | quote }}
{{- else if not (has $key $dropped) }}
{{- fail (printf "controller.extraArgs.%s: Portico has no such flag (see the chart's README for the flags it takes and the ingress-nginx flags it drops)" $key) }}
{{- end }}
{{- end }}
{{- end -}}
