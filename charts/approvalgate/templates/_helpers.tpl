{{/*
Names. Every name is trimmed to 63 characters; a suffixed name trims the prefix, never the
suffix, so "-ca" and "-tls" can never collapse into the same name.
*/}}
{{- define "approvalgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "approvalgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list . "suffix"). */}}
{{- define "approvalgate.suffixedName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $prefix := include "approvalgate.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{- define "approvalgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "approvalgate.bundleConfigMapName" -}}
{{- include "approvalgate.suffixedName" (list . "bundle") }}
{{- end }}

{{- define "approvalgate.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- .Values.tls.existingSecret.name }}
{{- else }}
{{- include "approvalgate.suffixedName" (list . "tls") }}
{{- end }}
{{- end }}

{{- define "approvalgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "approvalgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "approvalgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Labels: one definition, included by every template. */}}
{{- define "approvalgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "approvalgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "approvalgate.labels" -}}
{{ include "approvalgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: approvalgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "approvalgate.chart" . }}
{{- end }}

{{/*
Argo CD sync waves: the certificates (wave -1) before the Deployment (wave 0), and the
ValidatingWebhookConfiguration (wave 1) only once the webhook is healthy. Helm ignores them.
*/}}
{{- define "approvalgate.syncWave" -}}
argocd.argoproj.io/sync-wave: {{ . | quote }}
{{- end }}

{{/*
On custom resources (cert-manager, Prometheus operator): their CRDs may arrive in the same
Argo CD sync (an app-of-apps installing cert-manager too), so skip the dry-run that would
fail on the missing kind; Argo CD then applies them after the CRDs.
*/}}
{{- define "approvalgate.customResourceAnnotations" -}}
{{ include "approvalgate.syncWave" . }}
argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true
{{- end }}

{{/* The webhook's command line: keep it equal to the Dockerfile's CMD (tested). */}}
{{- define "approvalgate.args" -}}
- webhook
- serve
- --bundle
- /etc/approvalgate/bundle/bundle.json
- --tls-cert
- /etc/approvalgate/tls/tls.crt
- --tls-key
- /etc/approvalgate/tls/tls.key
- --port
- {{ .Values.webhook.port | int | quote }}
- --metrics-port
- {{ ternary (int .Values.metrics.port) 0 .Values.metrics.enabled | quote }}
- --workers
- {{ .Values.workers | int | quote }}
- --max-connections
- {{ .Values.webhook.maxConnections | int | quote }}
- --log-level
- {{ .Values.logLevel }}
- --cluster-view
- {{ ternary "auto" "off" .Values.webhook.clusterView | quote }}
- --view-max-age
- {{ .Values.webhook.viewMaxAgeSeconds | int | quote }}
{{- include "approvalgate.bundleTrustArgs" . }}
{{- end }}

{{/*
Which bundles the webhook and the controller enforce (approvalgate.validate checks the
values): each pinned key's text as one --bundle-key (toJson keeps a PEM's lines exactly), the
threshold, and the lowest revision (bundleSigning.minRevision, else the deployed
policyBundle.revision); --allow-unsigned-bundle only when asked for.
*/}}
{{- define "approvalgate.bundleTrustArgs" -}}
{{- $s := .Values.bundleSigning }}
{{- if $s.allowUnsigned }}
- --allow-unsigned-bundle
{{- else }}
{{- range $s.publicKeys }}
- --bundle-key
- {{ . | toJson }}
{{- end }}
- --bundle-threshold
- {{ $s.threshold | int | quote }}
{{- end }}
- --bundle-min-revision
- {{ include "approvalgate.minRevision" . | quote }}
{{- with include "approvalgate.bundleEnvironment" . }}
- --bundle-environment
- {{ . | quote }}
{{- end }}
{{- if include "approvalgate.bundleFloor" . }}
- --bundle-floor
- {{ printf "%s/%s" .Release.Namespace (include "approvalgate.bundleFloorName" .) | quote }}
{{- end }}
{{- end }}

{{/*
bundleSigning.environment; without pinned keys, else the environment of policyBundle.content
("" : none). With keys it is never taken from the content: another environment's bundle
signed by the same key, put in the compiled values, would pin its own environment and be
enforced (approvalgate.validate requires the pin).
*/}}
{{- define "approvalgate.bundleEnvironment" -}}
{{- if .Values.bundleSigning.environment -}}
{{ .Values.bundleSigning.environment }}
{{- else if and .Values.policyBundle.content (not .Values.bundleSigning.publicKeys) -}}
{{- $bundle := .Values.policyBundle.content | fromJson -}}
{{ get $bundle "environment" | default "" }}
{{- end -}}
{{- end }}

{{- define "approvalgate.minRevision" -}}
{{- if kindIs "invalid" .Values.bundleSigning.minRevision -}}
{{ .Values.policyBundle.revision | default 0 | int }}
{{- else -}}
{{ .Values.bundleSigning.minRevision | int }}
{{- end -}}
{{- end }}

{{/* Pod affinity: .Values.affinity as given, else the anti-affinity podAntiAffinity asks for. */}}
{{- define "approvalgate.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if eq .Values.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "approvalgate.selectorLabels" . | nindent 10 }}
{{- else if eq .Values.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "approvalgate.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/*
Impossible values fail the render early, with what to do. Included by deployment.yaml.
*/}}
{{- define "approvalgate.validate" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (lt (int .Values.replicaCount) 2) }}
{{- fail (printf "ERROR: podDisruptionBudget.enabled needs replicaCount >= 2 (got %d): with one replica a PodDisruptionBudget with minAvailable 1 blocks every node drain. Raise replicaCount or set podDisruptionBudget.enabled=false." (int .Values.replicaCount)) }}
{{- end }}
{{- if and $pdb.enabled (ge (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- fail (printf "ERROR: podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d), or no pod may ever be evicted." (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- if not .Values.tls.existingSecret.name }}
{{- fail "ERROR: tls.mode=existingSecret needs tls.existingSecret.name: a kubernetes.io/tls Secret in the release namespace." }}
{{- end }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec .Values.tls.existingSecret.caBundle)) }}
{{- fail "ERROR: tls.mode=existingSecret needs tls.existingSecret.caBundle: the base64-encoded PEM of the CA that signed the Secret's certificate (e.g. `base64 -w0 ca.crt`)." }}
{{- end }}
{{- else if .Values.tls.existingSecret.name }}
{{- fail "ERROR: tls.existingSecret.name is set but tls.mode is certManager: set tls.mode=existingSecret to use it." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "ERROR: metrics.serviceMonitor.enabled needs metrics.enabled=true: there is nothing to scrape." }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.webhook.port) }}
{{- fail "ERROR: metrics.port and webhook.port must differ." }}
{{- end }}
{{- $s := .Values.bundleSigning }}
{{- if and (not $s.publicKeys) (not $s.allowUnsigned) }}
{{- fail "ERROR: no bundle-signing key is pinned (bundleSigning.publicKeys is empty): the webhook and the controller would refuse to start. Pin the public keys that sign your bundles, e.g. --set-file 'bundleSigning.publicKeys[0]=keys/bundle-signing.pub' (in Argo CD: the Application's helm.values), and sign the bundle with `approvalgate compile --sign REF`; or, for development only, set bundleSigning.allowUnsigned=true." }}
{{- end }}
{{- if and $s.publicKeys $s.allowUnsigned }}
{{- fail "ERROR: bundleSigning.publicKeys and bundleSigning.allowUnsigned=true: choose one (allowUnsigned is for development without keys)." }}
{{- end }}
{{- /* controller.extraArgs come with the compiled values (the policy repo's file) and are
appended after the chart's arguments: argparse takes the last value of an option and any
unambiguous prefix of one (`--allow` is --allow-unsigned-bundle). So they may hold only the
tuning options below, by their whole name, each value after its option: never what the
chart renders itself, what the controller trusts, where it connects, what it watches or
where it sends what it knows. */ -}}
{{- $tuning := list "--log-level" "--resync" "--resync-seconds" "--gc-interval" "--gc-max-deletes" "--no-gc" "--notify-expiring-before" "--grace-period" "--lease-duration" "--renew-deadline" "--retry-period" }}
{{- $takesValue := false }}
{{- range .Values.controller.extraArgs }}
{{- if hasPrefix "-" . }}
{{- $name := regexReplaceAll "(?s)=.*" . "" }}
{{- if not (has $name $tuning) }}
{{- fail (printf "ERROR: controller.extraArgs holds %q: extra arguments, which the compiled values may set and which come after the chart's, may hold only the tuning options %s (whole names, e.g. --log-level=debug); which bundles the pods enforce comes from bundleSigning, pinned beside the keys, and everything else from its own chart value." . (join ", " $tuning)) }}
{{- end }}
{{- $takesValue = and (ne $name "--no-gc") (not (contains "=" .)) }}
{{- else if $takesValue }}
{{- $takesValue = false }}
{{- else }}
{{- fail (printf "ERROR: controller.extraArgs holds %q, which follows no option taking a value: the controller has no positional arguments. Write --OPTION=VALUE." .) }}
{{- end }}
{{- end }}
{{- if and $s.publicKeys (not $s.environment) }}
{{- fail "ERROR: bundleSigning.environment is empty: with pinned keys the environment the pods enforce must be pinned beside them (one key may sign every environment, and the compiled values could otherwise swap in another environment's bundle). Set bundleSigning.environment=ENV where the keys are pinned (the Argo CD Application's helm.values, or --set)." }}
{{- end }}
{{- if and $s.publicKeys .Values.policyBundle.content }}
{{- $content := .Values.policyBundle.content | fromJson }}
{{- if and (hasKey $content "environment") (ne (toString (get $content "environment")) $s.environment) }}
{{- fail (printf "ERROR: policyBundle.content is the bundle of environment %s but bundleSigning.environment is %s: the pods would refuse it. Deploy the values compiled for %s, or fix the pin." (toString (get $content "environment")) $s.environment $s.environment) }}
{{- end }}
{{- end }}
{{- if and $s.publicKeys .Values.policyBundle.content (ne (include "approvalgate.contentNamespaceSelection" .) $s.namespaceSelection) }}
{{- fail (printf "ERROR: the bundle's namespaceSelection is %s but bundleSigning.namespaceSelection is %s: with pinned keys the webhook's namespaceSelector follows the pinned value (Helm cannot check the bundle's signature). Set bundleSigning.namespaceSelection=%s where the keys are pinned (the Argo CD Application's helm.values), or recompile the bundle." (include "approvalgate.contentNamespaceSelection" .) $s.namespaceSelection (include "approvalgate.contentNamespaceSelection" .)) }}
{{- end }}
{{- if and $s.publicKeys (gt (int $s.threshold) (len $s.publicKeys)) }}
{{- fail (printf "ERROR: bundleSigning.threshold (%d) is more than the %d keys of bundleSigning.publicKeys: no bundle could ever be enforced." (int $s.threshold) (len $s.publicKeys)) }}
{{- end }}
{{- range .Values.guard.deployers.groups }}
{{- if has . (list "system:authenticated" "system:unauthenticated" "system:serviceaccounts") }}
{{- fail (printf "ERROR: guard.deployers.groups holds %s, which exempts everyone (or every ServiceAccount) from the guard: name the identities helm or Argo CD's application controller run as." .) }}
{{- end }}
{{- end }}
{{- $c := .Values.controller }}
{{- if $c.enabled }}
{{- if and $c.podDisruptionBudget.enabled (lt (int $c.replicas) 2) }}
{{- fail (printf "ERROR: controller.podDisruptionBudget.enabled needs controller.replicas >= 2 (got %d): with one replica a PodDisruptionBudget with minAvailable 1 blocks every node drain. Raise controller.replicas or set controller.podDisruptionBudget.enabled=false." (int $c.replicas)) }}
{{- end }}
{{- if and $c.podDisruptionBudget.enabled (ge (int $c.podDisruptionBudget.minAvailable) (int $c.replicas)) }}
{{- fail (printf "ERROR: controller.podDisruptionBudget.minAvailable (%d) must be below controller.replicas (%d), or no controller pod may ever be evicted." (int $c.podDisruptionBudget.minAvailable) (int $c.replicas)) }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int $c.metricsPort) (int $c.healthPort)) }}
{{- fail "ERROR: controller.metricsPort and controller.healthPort must differ." }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The in-cluster audit (audit-*.yaml): its own name and labels. The component `audit` keeps its
pods out of every webhook selector (Deployment, PodDisruptionBudget, NetworkPolicy, Service).
*/}}
{{- define "approvalgate.auditName" -}}
{{- include "approvalgate.suffixedName" (list . "audit") }}
{{- end }}

{{- define "approvalgate.auditSelectorLabels" -}}
app.kubernetes.io/name: {{ include "approvalgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: audit
{{- end }}

{{- define "approvalgate.auditLabels" -}}
{{ include "approvalgate.auditSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: approvalgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "approvalgate.chart" . }}
{{- end }}

{{/*
The bundle's namespace settings as JSON {"exclude": [...], "optIn": bool}: the webhook's
namespaceSelector and NOTES are built from the bundle itself, so they cannot disagree with
what the webhook enforces. No bundle, or one that is not JSON: nothing excluded (every
namespace is sent to a webhook that is never ready: fail closed).

With pinned bundle-signing keys the content is not trusted here: Helm cannot check its
signature, and a selector built from it would skip namespaces on the word of whoever edited
the values, while the pods refuse that bundle and keep enforcing the signed one. So nothing
is excluded by name (every namespace is sent; the webhook passes the signed bundle's
excludeNamespaces without looking), and the opt-in label comes only from the pinned
bundleSigning.namespaceSelection, which must agree with the content
(approvalgate.validate).
*/}}
{{- define "approvalgate.namespaceSelection" -}}
{{- $bundle := dict }}
{{- if .Values.policyBundle.content }}
{{- $bundle = .Values.policyBundle.content | fromJson }}
{{- end }}
{{- if .Values.bundleSigning.publicKeys }}
{{- dict "exclude" list "optIn" (eq .Values.bundleSigning.namespaceSelection "optInLabel") "passed" (get $bundle "excludeNamespaces" | default list) | toJson }}
{{- else }}
{{- dict "exclude" (get $bundle "excludeNamespaces" | default list) "optIn" (eq (toString (get $bundle "namespaceSelection")) "optInLabel") "passed" list | toJson }}
{{- end }}
{{- end }}

{{/* The content's namespaceSelection ("all" when it says none or is not JSON). */}}
{{- define "approvalgate.contentNamespaceSelection" -}}
{{- $bundle := dict }}
{{- if .Values.policyBundle.content }}
{{- $bundle = .Values.policyBundle.content | fromJson }}
{{- end }}
{{- get $bundle "namespaceSelection" | default "all" | toString }}
{{- end }}

{{/*
The approval controller (controller-*.yaml): its own name, labels and ServiceAccount. The
component `controller` keeps its pods out of every webhook selector.
*/}}
{{- define "approvalgate.controllerName" -}}
{{- include "approvalgate.suffixedName" (list . "controller") }}
{{- end }}

{{- define "approvalgate.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "approvalgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "approvalgate.controllerLabels" -}}
{{ include "approvalgate.controllerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: approvalgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "approvalgate.chart" . }}
{{- end }}

{{- define "approvalgate.controllerServiceAccountName" -}}
{{- $account := .Values.controller.serviceAccount }}
{{- if $account.create }}
{{- default (include "approvalgate.controllerName" .) $account.name }}
{{- else }}
{{- default "default" $account.name }}
{{- end }}
{{- end }}

{{- define "approvalgate.leaseName" -}}
{{- default (include "approvalgate.controllerName" .) .Values.controller.leaseName }}
{{- end }}

{{/* The queue's CRDs, the ClusterRoles for people, and labels of objects of no component. */}}
{{- define "approvalgate.sharedLabels" -}}
app.kubernetes.io/name: {{ include "approvalgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: queue
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: approvalgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "approvalgate.chart" . }}
{{- end }}

{{/* The webhook reads the cluster (its view of the queue) unless webhook.clusterView=false. */}}
{{- define "approvalgate.webhookReadsCluster" -}}
{{- if .Values.webhook.clusterView }}true{{ end }}
{{- end }}

{{/*
The bundle revision floor (docs/design.md, "The revision floor"): "true" when signed bundles
are enforced (keys pinned), whether or not the controller, which keeps the floor, runs: a
floor it recorded stays in force if the compiled values switch it off. Its ConfigMap is made
by the controller, never rendered: the compiled values must not write it.
*/}}
{{- define "approvalgate.bundleFloor" -}}
{{- if not .Values.bundleSigning.allowUnsigned }}true{{ end }}
{{- end }}

{{/*
The floor's name is fixed, never taken from the values (fullnameOverride would otherwise
point the pods at a fresh, empty floor); its entries are per environment, so releases of
several environments in one namespace share it safely.
*/}}
{{- define "approvalgate.bundleFloorName" -}}
approvalgate-bundle-floor
{{- end }}

{{/* The webhook talks to the API server: its cluster view, or the revision floor. */}}
{{- define "approvalgate.webhookTalksToApi" -}}
{{- if or (include "approvalgate.webhookReadsCluster" .) (include "approvalgate.bundleFloor" .) }}true{{ end }}
{{- end }}

{{/*
Egress to the API server (the webhook's view, the controller): to networkPolicy.apiServer,
or to any destination on the API server ports when it is empty (its endpoints are not known
to the chart). Renders one NetworkPolicyEgressRule, as a list item.
*/}}
{{- define "approvalgate.apiServerEgress" -}}
- ports:
    {{- range .Values.networkPolicy.apiServerPorts }}
    - port: {{ . | int }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.apiServer }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* DNS egress rules (kube-dns, node-local-dns), as list items; empty without dns.enabled. */}}
{{- define "approvalgate.dnsEgress" -}}
{{- $np := .Values.networkPolicy }}
{{- if $np.dns.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- with $np.dns.nodeLocalDNS }}
- to:
    {{- range . }}
    - ipBlock:
        cidr: {{ printf "%s/32" . }}
    {{- end }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
{{- end }}
{{- end }}

{{/* The controller's command line (contract: `approvalgate controller`). */}}
{{- define "approvalgate.controllerArgs" -}}
{{- $c := .Values.controller }}
- controller
- --bundle
- /etc/approvalgate/bundle/bundle.json
{{- range $c.namespaces }}
- --namespace
- {{ . | quote }}
{{- end }}
- --lease-namespace
- {{ .Release.Namespace }}
- --lease-name
- {{ include "approvalgate.leaseName" . }}
- --identity
- $(POD_NAME)
- --metrics-port
- {{ ternary (int $c.metricsPort) 0 .Values.metrics.enabled | quote }}
- --health-port
- {{ $c.healthPort | int | quote }}
{{- if $c.signalDeliveries.enabled }}
- --signal-deliveries
{{- end }}
{{- include "approvalgate.bundleTrustArgs" . }}
{{- /* the notification URL is a secret: the controller reads APPROVALGATE_NOTIFY_URL from
its environment (set from the Secret below), so it is never on the command line */ -}}
{{- range $c.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
What the gate's ValidatingWebhookConfiguration must keep, as JSON {"names": [...], "hooks":
{name: {"rules": [...], "namespaceSelector": {...}, "service": {...}}}}: the webhook
configuration renders its rules, selectors and Service from it, and the guard
(guard-validatingadmissionpolicy.yaml) puts the same values into its CEL, so the two cannot
disagree.
*/}}
{{- define "approvalgate.webhookShape" -}}
{{- $selection := include "approvalgate.namespaceSelection" . | fromJson }}
{{- $selector := dict }}
{{- if $selection.optIn }}
{{- $_ := set $selector "matchLabels" (dict "approvals.proompteng.ai/enforce" "true") }}
{{- end }}
{{- if $selection.exclude }}
{{- $_ := set $selector "matchExpressions" (list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $selection.exclude)) }}
{{- end }}
{{- $service := dict "name" (include "approvalgate.fullname" .) "namespace" .Release.Namespace "path" "/validate" "port" (.Values.service.port | int) }}
{{- $cu := list "CREATE" "UPDATE" }}
{{- $cud := list "CREATE" "UPDATE" "DELETE" }}
{{- $runs := list
  (dict "apiGroups" (list "agents.proompteng.ai") "apiVersions" (list "*") "operations" $cu "resources" (list "agentruns" "agentruns/scale") "scope" "Namespaced")
  (dict "apiGroups" (list "schedules.proompteng.ai") "apiVersions" (list "*") "operations" $cu "resources" (list "schedules" "schedules/scale") "scope" "Namespaced")
  (dict "apiGroups" (list "orchestration.proompteng.ai") "apiVersions" (list "*") "operations" $cu "resources" (list "orchestrationruns" "orchestrationruns/scale") "scope" "Namespaced")
  (dict "apiGroups" (list "swarm.proompteng.ai") "apiVersions" (list "*") "operations" $cu "resources" (list "swarms" "swarms/scale") "scope" "Namespaced")
  (dict "apiGroups" (list "agents.proompteng.ai") "apiVersions" (list "*") "operations" $cud "resources" (list "implementationspecs" "agents" "agentproviders" "implementationspecs/scale" "agents/scale" "agentproviders/scale") "scope" "Namespaced") }}
{{- $gates := list
  (dict "apiGroups" (list "gates.proompteng.ai") "apiVersions" (list "*") "operations" $cud "resources" (list "approvalrequests" "approvaldecisions" "approvaluses") "scope" "Namespaced") }}
{{- $hooks := dict
  "agentruns.approvalgate.proompteng.ai" (dict "rules" $runs "namespaceSelector" $selector "service" $service)
  "gates.approvalgate.proompteng.ai" (dict "rules" $gates "namespaceSelector" dict "service" $service) }}
{{- dict "names" (list "agentruns.approvalgate.proompteng.ai" "gates.approvalgate.proompteng.ai") "hooks" $hooks | toJson }}
{{- end }}

{{/*
The guard's exemption as a CEL condition on the request: true when the request's user is one
of guard.deployers (by username or group). No deployer named: false.
*/}}
{{- define "approvalgate.guardDeployer" -}}
{{- $users := .Values.guard.deployers.users | default list }}
{{- $groups := .Values.guard.deployers.groups | default list }}
{{- if or $users $groups -}}
(request.userInfo.username in {{ toJson $users }} || (has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in {{ toJson $groups }})))
{{- else -}}
false
{{- end }}
{{- end }}
