"""Checks on a set of Kubernetes objects (one example directory, or one rendering of the chart).

- schema: every object against the Kubernetes OpenAPI schemas bundled by kubernetes-validate,
  in strict mode (unknown fields are errors), for each Kubernetes version in KUBE_VERSIONS.
  Custom resources (CRD_KINDS) are collected for their models' check (crds.mjs).
- references: what a schema cannot see: Services select a Deployment's pods and target a
  port it declares, probes name declared ports, secretKeyRef/ConfigMap volumes name objects
  and keys of the set, ServiceAccounts and NetworkPolicy selectors and ports exist, Ingress
  backends and ingress-nginx auth annotations name real Services and ports, names and
  quantities are well-formed. (The ext_authz examples' own references: extauthz.py.)
- posture: the portcullis container runs as non-root with a read-only root filesystem, no
  capabilities, resources, and liveness on /ping, readiness on /ready.
- portcullis_runs: the config.toml and the environment each portcullis container would get,
  for `portcullis check --offline`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import kubernetes_validate

KUBE_VERSIONS = ["1.28", "1.37"]
# Custom resources: (apiVersion, kind) -> the @kubernetes-models model that validates them
# (crds.mjs; the npm packages are pinned in package.json).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
    ("security.istio.io/v1", "AuthorizationPolicy"): "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy",
    ("networking.istio.io/v1", "Gateway"): "@kubernetes-models/istio/networking.istio.io/v1/Gateway",
    ("networking.istio.io/v1", "VirtualService"): "@kubernetes-models/istio/networking.istio.io/v1/VirtualService",
    ("gateway.networking.k8s.io/v1", "Gateway"): "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute",
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/SecurityPolicy",
}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
AUTH_HEADERS = [
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Preferred-Username",
]


@dataclass
class Obj:
    source: str  # file (and document) it came from
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "?")

    @property
    def name(self) -> str:
        return (self.doc.get("metadata") or {}).get("name", "?")

    @property
    def label(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


@dataclass
class PortcullisRun:
    """What one portcullis container would run with."""

    where: str
    config_text: str | None
    config_problem: str | None
    env: dict[str, str] = field(default_factory=dict)
    env_missing: list[str] = field(default_factory=list)  # secretKeyRefs to Secrets outside the set


def is_portcullis(container: dict) -> bool:
    return "portcullis" in container.get("image", "") or container.get("name") == "portcullis"


def pod_spec(obj: Obj) -> dict | None:
    if obj.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return ((obj.doc.get("spec") or {}).get("template") or {}).get("spec")
    if obj.kind == "Pod":
        return obj.doc.get("spec")
    return None


def pod_labels(obj: Obj) -> dict:
    return (((obj.doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def is_mesh_config(o: Obj) -> bool:
    """Istio's mesh configuration: a fragment to merge into istio-system's, never applied as
    it is (it would replace the whole mesh configuration)."""
    meta = o.doc.get("metadata") or {}
    return o.kind == "ConfigMap" and o.name == "istio" and meta.get("namespace") == "istio-system"


# ---------------------------------------------------------------------------------------------
# schema


def schema_errors(objs: list[Obj], crds: list[Obj]) -> list[str]:
    errors = []
    for o in objs:
        api, kind = o.doc.get("apiVersion"), o.doc.get("kind")
        if not api or not kind:
            errors.append(f"{o.source}: a document without apiVersion/kind")
            continue
        if (api, kind) in CRD_KINDS:
            crds.append(o)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(o.doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                errors.append(f"{o.label}: Kubernetes {version} schema: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{o.label}: {e.message}")
                break
    return errors


# ---------------------------------------------------------------------------------------------
# references and well-formedness


def _selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _container_ports(spec: dict) -> dict[str, int]:
    ports = {}
    for c in spec.get("containers", []):
        for p in c.get("ports", []) or []:
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
            ports[str(p["containerPort"])] = p["containerPort"]
    return ports


def _probe_port(probe: dict):
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return probe[kind].get("port")
    return None


def _quantities(resources: dict):
    for section in ("requests", "limits"):
        for key, value in (resources.get(section) or {}).items():
            yield f"{section}.{key}", str(value)


def reference_errors(objs: list[Obj], namespace: str | None) -> list[str]:
    errors: list[str] = []
    by_kind: dict[str, dict[str, Obj]] = {}
    for o in objs:
        seen = by_kind.setdefault(o.kind, {})
        if o.name in seen:
            errors.append(f"{o.label}: defined twice (also in {seen[o.name].source})")
        seen[o.name] = o
        meta = o.doc.get("metadata") or {}
        if not DNS1123_SUBDOMAIN.match(o.name) or len(o.name) > 253:
            errors.append(f"{o.label}: metadata.name is not a DNS-1123 subdomain")
        if o.kind in ("Service", "Deployment") and (len(o.name) > 63 or not DNS1123_LABEL.match(o.name)):
            errors.append(f"{o.label}: metadata.name must be a DNS-1123 label (63 characters at most)")
        if namespace and meta.get("namespace") not in (None, namespace) and not is_mesh_config(o):
            errors.append(f"{o.label}: namespace {meta.get('namespace')!r}, expected {namespace!r}")

    secrets = by_kind.get("Secret", {})
    configmaps = by_kind.get("ConfigMap", {})
    workloads = [o for o in objs if pod_spec(o) is not None]

    def secret_keys(name: str) -> set[str] | None:
        s = secrets.get(name)
        if s is None:
            return None
        return set((s.doc.get("data") or {}).keys()) | set((s.doc.get("stringData") or {}).keys())

    for w in workloads:
        spec = pod_spec(w) or {}
        selector = ((w.doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if w.kind != "Pod" and not _selector_matches(selector, pod_labels(w)):
            errors.append(f"{w.label}: spec.selector.matchLabels does not match the pod template's labels")
        ports = _container_ports(spec)
        volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{w.label}: container {c.get('name')}"
            for p in c.get("ports", []) or []:
                if "name" in p and (len(p["name"]) > 15 or not PORT_NAME.match(p["name"])):
                    errors.append(f"{where}: port name {p['name']!r} is not a valid IANA service name")
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if probe:
                    port = _probe_port(probe)
                    if port is not None and str(port) not in ports:
                        errors.append(f"{where}: {probe_name} port {port!r} is not a declared container port")
            for env in c.get("env", []) or []:
                if not ENV_NAME.match(env.get("name", "")):
                    errors.append(f"{where}: env name {env.get('name')!r} is invalid")
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    keys = secret_keys(ref["name"])
                    if keys is not None and ref["key"] not in keys:
                        errors.append(f"{where}: env {env['name']}: Secret {ref['name']} has no key {ref['key']!r}")
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    cm = configmaps.get(ref["name"])
                    if cm is None or ref["key"] not in (cm.doc.get("data") or {}):
                        errors.append(f"{where}: env {env['name']}: no ConfigMap {ref['name']} with key {ref['key']!r}")
            for mount in c.get("volumeMounts", []) or []:
                if mount["name"] not in volumes:
                    errors.append(f"{where}: volumeMount {mount['name']!r} names no volume")
            for label, value in _quantities(c.get("resources") or {}):
                if not QUANTITY.match(value):
                    errors.append(f"{where}: resources.{label} {value!r} is not a Kubernetes quantity")
        for v in volumes.values():
            if "configMap" in v:
                cm = configmaps.get(v["configMap"]["name"])
                if cm is None:
                    errors.append(f"{w.label}: volume {v['name']}: ConfigMap {v['configMap']['name']} is not defined")
                else:
                    for item in v["configMap"].get("items", []) or []:
                        if item["key"] not in (cm.doc.get("data") or {}):
                            errors.append(f"{w.label}: volume {v['name']}: ConfigMap has no key {item['key']!r}")
            if "secret" in v and v["secret"].get("secretName") not in secrets:
                errors.append(f"{w.label}: volume {v['name']}: Secret {v['secret'].get('secretName')} is not defined")

    services = by_kind.get("Service", {})
    for s in services.values():
        selector = (s.doc.get("spec") or {}).get("selector") or {}
        matched = [w for w in workloads if _selector_matches(selector, pod_labels(w))]
        if not matched:
            errors.append(f"{s.label}: spec.selector matches no workload of the set")
        elif len(matched) > 1:
            errors.append(f"{s.label}: spec.selector matches several workloads: {[w.name for w in matched]}")
        for p in (s.doc.get("spec") or {}).get("ports", []) or []:
            target = str(p.get("targetPort", p.get("port")))
            for w in matched:
                if target not in _container_ports(pod_spec(w) or {}):
                    errors.append(f"{s.label}: port {p.get('name')}: targetPort {target!r} is not a port of {w.name}")

    for w in workloads:
        sa = (pod_spec(w) or {}).get("serviceAccountName")
        if sa and sa != "default" and sa not in by_kind.get("ServiceAccount", {}):
            errors.append(f"{w.label}: serviceAccountName {sa!r} is not a ServiceAccount of the set")

    for np in by_kind.get("NetworkPolicy", {}).values():
        selector = ((np.doc.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
        selected = [w for w in workloads if _selector_matches(selector, pod_labels(w))]
        if not selected:
            errors.append(f"{np.label}: spec.podSelector matches no workload of the set")
        for rule in (np.doc.get("spec") or {}).get("ingress", []) or []:
            for p in rule.get("ports", []) or []:
                for w in selected:
                    if "port" in p and str(p["port"]) not in _container_ports(pod_spec(w) or {}):
                        errors.append(f"{np.label}: ingress port {p['port']!r} is not a port of {w.name}")

    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        selector = ((pdb.doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not any(_selector_matches(selector, pod_labels(w)) for w in workloads):
            errors.append(f"{pdb.label}: spec.selector matches no workload of the set")

    for sm in by_kind.get("ServiceMonitor", {}).values():
        spec = sm.doc.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        targets = [s for s in services.values() if _selector_matches(selector, (s.doc["metadata"].get("labels") or {}))]
        if not targets:
            errors.append(f"{sm.label}: spec.selector matches the labels of no Service of the set")
        for ep in spec.get("endpoints", []) or []:
            for s in targets:
                names = {p.get("name") for p in s.doc["spec"].get("ports", [])}
                if ep.get("port") not in names:
                    errors.append(f"{sm.label}: endpoint port {ep.get('port')!r} is not a port name of Service {s.name}")

    def service_port(name: str, port: dict) -> bool:
        s = services.get(name)
        if s is None:
            return False
        for p in s.doc["spec"].get("ports", []):
            if ("name" in port and p.get("name") == port["name"]) or ("number" in port and p["port"] == port["number"]):
                return True
        return False

    ingresses = by_kind.get("Ingress", {})
    # host -> path -> Services serving it, for portcullis' own paths
    oauth2_routes: dict[str, dict[str, set[str]]] = {}
    for ing in ingresses.values():
        for rule in (ing.doc.get("spec") or {}).get("rules", []) or []:
            for path in (rule.get("http") or {}).get("paths", []) or []:
                svc = (path.get("backend") or {}).get("service") or {}
                if not service_port(svc.get("name"), svc.get("port") or {}):
                    errors.append(f"{ing.label}: backend {svc.get('name')}:{svc.get('port')} is not a Service port of the set")
                p = path.get("path", "").rstrip("/")
                if not p.startswith("/oauth2"):
                    continue
                oauth2_routes.setdefault(rule.get("host"), {}).setdefault(p, set()).add(svc.get("name"))
                prefix = path.get("pathType") in ("Prefix", "ImplementationSpecific")
                if p == "/oauth2/auth" or (prefix and "/oauth2/auth".startswith(p + "/")):
                    errors.append(
                        f"{ing.label}: path {path.get('path')} routes /oauth2/auth from outside; only the "
                        "ingress controller may call it (a page script would get the identity and any access token)"
                    )
    for ing in ingresses.values():
        ann = (ing.doc.get("metadata") or {}).get("annotations") or {}
        auth_url = ann.get("nginx.ingress.kubernetes.io/auth-url")
        if not auth_url:
            continue
        u = urlsplit(auth_url)
        host_parts = (u.hostname or "").split(".")
        svc_name = host_parts[0]
        if u.path != "/oauth2/auth":
            errors.append(f"{ing.label}: auth-url path is {u.path!r}, expected /oauth2/auth")
        if not service_port(svc_name, {"number": u.port or 80}):
            errors.append(f"{ing.label}: auth-url {auth_url} names no Service port of the set")
        if len(host_parts) >= 2 and namespace and host_parts[1] != namespace:
            errors.append(f"{ing.label}: auth-url names namespace {host_parts[1]!r}, the set is deployed to {namespace!r}")
        signin = ann.get("nginx.ingress.kubernetes.io/auth-signin", "")
        if "/oauth2/start" not in signin:
            errors.append(f"{ing.label}: auth-signin does not point at /oauth2/start")
        passed = [h.strip().lower() for h in ann.get("nginx.ingress.kubernetes.io/auth-response-headers", "").split(",")]
        for h in AUTH_HEADERS:
            if h.lower() not in passed:
                errors.append(f"{ing.label}: auth-response-headers lacks {h}")
        for rule in ing.doc["spec"].get("rules", []):
            routed = oauth2_routes.get(rule.get("host"), {})
            for needed in ("/oauth2/start", "/oauth2/callback", "/oauth2/sign_out"):
                if svc_name not in routed.get(needed, set()):
                    errors.append(f"{ing.label}: host {rule.get('host')}: no Ingress routes {needed} to {svc_name}")
    return errors


# ---------------------------------------------------------------------------------------------
# security posture and probes of the portcullis containers


def posture_errors(objs: list[Obj]) -> list[str]:
    errors = []
    found = False
    for w in objs:
        spec = pod_spec(w)
        if spec is None:
            continue
        pod_sc = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{w.label}: automountServiceAccountToken should be false")
        for c in spec.get("containers", []):
            where = f"{w.label}: container {c['name']}"
            sc = c.get("securityContext") or {}
            run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if run_as_non_root is not True:
                errors.append(f"{where}: runAsNonRoot is not true")
            if run_as_user in (None, 0):
                errors.append(f"{where}: runAsUser should be a non-zero number")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{where}: capabilities.drop lacks ALL")
            if (sc.get("capabilities") or {}).get("add"):
                errors.append(f"{where}: adds capabilities")
            resources = c.get("resources") or {}
            if not (resources.get("requests") or {}).get("memory") or not (resources.get("limits") or {}).get("memory"):
                errors.append(f"{where}: needs memory requests and limits")
            if not is_portcullis(c):
                continue
            found = True
            live = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
            ready = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
            if live != "/ping":
                errors.append(f"{where}: livenessProbe should be httpGet /ping (is {live!r})")
            if ready != "/ready":
                errors.append(f"{where}: readinessProbe should be httpGet /ready (is {ready!r})")
    if not found:
        errors.append("no portcullis container in the set")
    return errors


# ---------------------------------------------------------------------------------------------
# what `portcullis run` would see


def _config_arg(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _secret_value(secret: Obj, key: str) -> str | None:
    string_data = secret.doc.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    data = secret.doc.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    return None


def portcullis_runs(objs: list[Obj]) -> list[PortcullisRun]:
    runs = []
    configmaps = {o.name: o for o in objs if o.kind == "ConfigMap"}
    secrets = {o.name: o for o in objs if o.kind == "Secret"}
    for w in objs:
        spec = pod_spec(w)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
        for c in spec.get("containers", []):
            if not is_portcullis(c):
                continue
            where = f"{w.label}: container {c['name']}"
            run = PortcullisRun(where=where, config_text=None, config_problem=None)
            runs.append(run)
            path = _config_arg(list(c.get("command", []) or []) + list(c.get("args", []) or []))
            if path is None:
                run.config_problem = "no --config argument"
            else:
                for m in c.get("volumeMounts", []) or []:
                    mount = m["mountPath"].rstrip("/") + "/"
                    if not path.startswith(mount):
                        continue
                    volume = volumes.get(m["name"], {})
                    if "configMap" not in volume:
                        continue
                    key = m.get("subPath") or path[len(mount):]
                    for item in volume["configMap"].get("items", []) or []:
                        if item["path"] == key:
                            key = item["key"]
                    cm = configmaps.get(volume["configMap"]["name"])
                    run.config_text = ((cm.doc.get("data") or {}) if cm else {}).get(key)
                if run.config_text is None:
                    run.config_problem = f"{path} is not a key of a ConfigMap mounted into the container"
            for env in c.get("env", []) or []:
                if "value" in env:
                    run.env[env["name"]] = str(env["value"])
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secret = secrets.get(ref["name"])
                    value = _secret_value(secret, ref["key"]) if secret else None
                    if value is None:
                        run.env_missing.append(env["name"])
                    else:
                        run.env[env["name"]] = value
    return runs


# ---------------------------------------------------------------------------------------------
# Secrets the pods read


@dataclass
class SecretUse:
    """How the pods of a set read one Secret: the keys they name, whether they take it whole
    (envFrom, a volume without items: then any key is read), and who reads it."""

    keys: set[str] = field(default_factory=set)
    optional_keys: set[str] = field(default_factory=set)
    whole: bool = False
    readers: list[str] = field(default_factory=list)


def secret_uses(objs: list[Obj]) -> dict[str, SecretUse]:
    """The Secrets read through secretKeyRef, envFrom and volumes (Secret and projected), by name."""
    uses: dict[str, SecretUse] = {}

    def use(name: str, reader: str, key: str | None = None, optional: bool = False) -> None:
        u = uses.setdefault(name, SecretUse())
        u.readers.append(reader)
        if key is None:
            u.whole = True
        else:
            (u.optional_keys if optional else u.keys).add(key)

    for w in objs:
        spec = pod_spec(w)
        if spec is None:
            continue
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{w.kind}/{w.name}: container {c.get('name')}"
            for env in c.get("env", []) or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    use(ref["name"], f"{where}: env {env['name']}", ref["key"], bool(ref.get("optional")))
            for src in c.get("envFrom", []) or []:
                if "secretRef" in src:
                    use(src["secretRef"]["name"], f"{where}: envFrom")
        sources = []
        for v in spec.get("volumes", []) or []:
            if "secret" in v:
                sources.append((v["name"], v["secret"].get("secretName"), v["secret"]))
            for p in (v.get("projected") or {}).get("sources", []) or []:
                if "secret" in p:
                    sources.append((v["name"], p["secret"].get("name"), p["secret"]))
        for volume, name, src in sources:
            where = f"{w.kind}/{w.name}: volume {volume}"
            items = src.get("items") or []
            if not items:
                use(name, where)
            for item in items:
                use(name, where, item["key"], bool(src.get("optional")))
    return uses
