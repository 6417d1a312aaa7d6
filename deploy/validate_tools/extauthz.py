"""References in a set of Kubernetes objects where a proxy asks portcullis about each request
over Envoy's external authorization (server.ext_authz_listen): Istio (mesh config extension
provider, AuthorizationPolicy, Gateway, VirtualService) and Envoy Gateway (Gateway API
Gateway and HTTPRoute, SecurityPolicy). What the CRD schemas (crds.mjs) cannot see:

- the provider or backend named for the checks is portcullis' Service, on the port that
  reaches its ext_authz_listen (and speaks gRPC);
- portcullis' browser endpoints (/oauth2/start, the callback, sign-out, userinfo, back-channel
  logout) are routed to its HTTP port without a check, /oauth2/auth is not routed from
  outside, and everything else reaches the application only through the check;
- policies select workloads of the set, principals name its ServiceAccounts and namespace.

Istio's mesh configuration has no installable schema: it is parsed, and its ext_authz provider
is held to the fields of Istio's MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider
(istio/api mesh/v1alpha1/config.proto) besides these references.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

import kube

KINDS = {"AuthorizationPolicy", "VirtualService", "HTTPRoute", "SecurityPolicy"}
# Istio's EnvoyExternalAuthorizationGrpcProvider, as its mesh configuration spells them.
GRPC_PROVIDER_FIELDS = {"service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck"}
LOGIN_PATHS = ["/oauth2/start", "/oauth2/sign_out", "/oauth2/userinfo", "/oauth2/backchannel_logout"]
FORWARD_AUTH_PATHS = ["/oauth2/auth", "/oauth2/auth/app/page"]
APP_PATHS = ["/", "/some/page"]


def applies(objs: list[kube.Obj]) -> bool:
    return any(o.kind in KINDS or kube.is_mesh_config(o) for o in objs)


@dataclass
class Example:
    """The objects of one example (or rendering), looked up by what the checks ask."""

    objs: list[kube.Obj]
    namespace: str | None
    by_kind: dict[str, dict[str, kube.Obj]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # portcullis' config.toml
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        for o in self.objs:
            if not kube.is_mesh_config(o):
                self.by_kind.setdefault(o.kind, {})[o.name] = o
        runs = [r for r in kube.portcullis_runs(self.objs) if r.config_text]
        if not runs:
            self.errors.append("no portcullis container with a config.toml in the set")
            return
        self.config = tomllib.loads(runs[0].config_text)
        if not (self.config.get("server") or {}).get("ext_authz_listen"):
            self.errors.append("portcullis' config.toml has no server.ext_authz_listen: nothing answers the checks")

    def port_of(self, key: str, default: str) -> int:
        return int(str((self.config.get("server") or {}).get(key, default)).rsplit(":", 1)[1])

    @property
    def ext_authz_port(self) -> int:
        return self.port_of("ext_authz_listen", ":0")

    @property
    def listen_port(self) -> int:
        return self.port_of("listen", "127.0.0.1:4180")

    @property
    def callback(self) -> str:
        return urlsplit((self.config.get("oidc") or {}).get("redirect_url", "")).path

    def workloads(self, labels_selector: dict) -> list[kube.Obj]:
        return [w for w in self.objs if kube.pod_spec(w) is not None and kube._selector_matches(labels_selector, kube.pod_labels(w))]

    def service_port(self, name: str, number) -> tuple[kube.Obj, dict] | None:
        s = self.by_kind.get("Service", {}).get(name)
        for p in (s.doc["spec"].get("ports", []) if s else []):
            if p.get("port") == number:
                return s, p
        return None

    def target(self, service: kube.Obj, port: dict) -> tuple[bool, int | None]:
        """(the Service selects portcullis, the container port number the port reaches)."""
        workloads = self.workloads((service.doc.get("spec") or {}).get("selector") or {})
        target = str(port.get("targetPort", port.get("port")))
        for w in workloads:
            number = kube._container_ports(kube.pod_spec(w) or {}).get(target)
            if number is not None:
                return any(kube.is_portcullis(c) for c in kube.pod_spec(w).get("containers", [])), number
        return False, None

    def reaches_ext_authz(self, name: str, number) -> str | None:
        """None when Service name:number reaches portcullis' ext_authz_listen, else why not."""
        found = self.service_port(name, number)
        if found is None:
            return f"{name}:{number} is not a Service port of the set"
        portcullis, target = self.target(*found)
        if not portcullis or target != self.ext_authz_port:
            return f"{name}:{number} reaches container port {target}, not portcullis' ext_authz_listen port {self.ext_authz_port}"
        return None

    def destination(self, name: str, number) -> str:
        """What Service name:number is for the routing checks: login, ext_authz, app, or ?."""
        found = self.service_port(name, number)
        if found is None:
            return "?"
        portcullis, target = self.target(*found)
        if portcullis:
            return "login" if target == self.listen_port else "ext_authz" if target == self.ext_authz_port else "?"
        return f"app:{name}"

    def namespace_error(self, where: str, ns: str) -> list[str]:
        if self.namespace and ns != self.namespace:
            return [f"{where}: names namespace {ns!r}, the set is deployed to {self.namespace!r}"]
        return []


def reference_errors(objs: list[kube.Obj], namespace: str | None) -> list[str]:
    s = Example(objs, namespace)
    if s.errors:
        return s.errors
    providers, errors = _mesh_config(s)
    custom = _custom_policies(s, providers, errors)
    errors += _allow_policy_errors(s, custom)
    errors += _virtual_service_errors(s, custom)
    errors += _http_route_errors(s)
    errors += _security_policy_errors(s)
    errors += _isolation_errors(s)
    return errors


# ---------------------------------------------------------------------------------------------
# Istio


def _mesh_config(s: Example) -> tuple[set[str], list[str]]:
    """The ext_authz providers of the set's mesh config fragment pointing at portcullis."""
    errors: list[str] = []
    providers: set[str] = set()
    for o in (o for o in s.objs if kube.is_mesh_config(o)):
        try:
            mesh = yaml.safe_load((o.doc.get("data") or {}).get("mesh", "")) or {}
        except yaml.YAMLError as e:
            errors.append(f"{o.label}: data.mesh is not YAML: {e}")
            continue
        for i, p in enumerate(mesh.get("extensionProviders", []) if isinstance(mesh, dict) else []):
            where = f"{o.label}: extensionProviders[{i}] {p.get('name')!r}"
            grpc = p.get("envoyExtAuthzGrpc")
            if grpc is None:
                continue
            extra = set(grpc) - GRPC_PROVIDER_FIELDS
            if extra:
                errors.append(f"{where}: envoyExtAuthzGrpc has no field(s) {sorted(extra)} (Istio: {sorted(GRPC_PROVIDER_FIELDS)})")
            if grpc.get("failOpen") is True:
                errors.append(f"{where}: failOpen lets requests through when portcullis does not answer")
            host = str(grpc.get("service") or "").split("/")[-1].split(".")
            if len(host) < 2:
                errors.append(f"{where}: service {grpc.get('service')!r} is not <service>.<namespace>.svc.cluster.local")
                continue
            errors += s.namespace_error(where, host[1])
            problem = s.reaches_ext_authz(host[0], grpc.get("port"))
            if problem:
                errors.append(f"{where}: {problem}")
                continue
            _, port = s.service_port(host[0], grpc.get("port"))
            # Istio's protocol selection: appProtocol, else the port name's prefix.
            protocol = port.get("appProtocol") or str(port.get("name", "")).split("-")[0]
            if protocol not in ("grpc", "http2"):
                errors.append(f"{where}: Service port {port.get('name')} is not declared gRPC (appProtocol: grpc), so Istio would not speak HTTP/2 to it")
            providers.add(p.get("name"))
    if not providers and any(o.kind == "AuthorizationPolicy" for o in s.objs):
        errors.append("no mesh config fragment (ConfigMap istio in istio-system) declares portcullis as an envoyExtAuthzGrpc provider")
    return providers, errors


def _istio_path_match(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def _rule_matches(rule: dict, path: str) -> bool | None:
    """Whether an AuthorizationPolicy rule matches a request for path; None if the rule has
    conditions other than paths/notPaths (not evaluated here)."""
    if rule.get("from") or rule.get("when"):
        return None
    ops = [t.get("operation") or {} for t in rule.get("to", []) or []] or [{}]
    for op in ops:
        if set(op) - {"paths", "notPaths"}:
            return None
        inc = not op.get("paths") or any(_istio_path_match(p, path) for p in op["paths"])
        exc = any(_istio_path_match(p, path) for p in op.get("notPaths", []) or [])
        if inc and not exc:
            return True
    return False


def _custom_policies(s: Example, providers: set[str], errors: list[str]) -> dict[str, kube.Obj]:
    """The workloads (by name) whose application paths a CUSTOM policy sends to portcullis."""
    checked: dict[str, kube.Obj] = {}
    for ap in s.by_kind.get("AuthorizationPolicy", {}).values():
        spec = ap.doc.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        selected = s.workloads(selector)
        if not selected:
            errors.append(f"{ap.label}: spec.selector matches no workload of the set")
        if spec.get("action") != "CUSTOM":
            continue
        name = (spec.get("provider") or {}).get("name")
        if name not in providers:
            errors.append(f"{ap.label}: provider {name!r} is not an ext_authz provider of the set's mesh config pointing at portcullis")
            continue
        if any(kube.is_portcullis(c) for w in selected for c in kube.pod_spec(w).get("containers", [])):
            errors.append(f"{ap.label}: selects portcullis itself, whose login pages would need a login")
        rules = spec.get("rules") or []
        for path in APP_PATHS:
            results = [_rule_matches(r, path) for r in rules]
            if None in results:
                errors.append(f"{ap.label}: rules with conditions other than to.operation paths/notPaths are not evaluated here; extend extauthz.py")
                break
            if not any(results):
                errors.append(f"{ap.label}: {path} is not sent to portcullis (no rule matches it)")
        errors += _unchecked_paths_denied(s, ap, selected)
        for w in selected:
            checked[w.name] = w
    return checked


def _unchecked_paths_denied(s: Example, custom: kube.Obj, selected: list[kube.Obj]) -> list[str]:
    """Paths a CUSTOM policy leaves out of the check must not reach the workload at all: a
    DENY policy on it refuses them (portcullis' own paths belong to portcullis)."""
    errors = []
    rules = (custom.doc.get("spec") or {}).get("rules") or []
    for path in LOGIN_PATHS + FORWARD_AUTH_PATHS + ["/oauth2/other"]:
        if any(_rule_matches(r, path) for r in rules):
            continue
        denied = any(
            (ap.doc.get("spec") or {}).get("action") == "DENY"
            and all(w in s.workloads(((ap.doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}) for w in selected)
            and any(_rule_matches(r, path) for r in (ap.doc.get("spec") or {}).get("rules") or [])
            for ap in s.by_kind.get("AuthorizationPolicy", {}).values()
        )
        if not denied:
            errors.append(f"{custom.label}: {path} is left out of the check, and no DENY policy keeps it from the application")
    return errors


def _allow_policy_errors(s: Example, custom: dict[str, kube.Obj]) -> list[str]:
    """An ALLOW policy on portcullis: its ext_authz port only from the checked workloads."""
    errors = []
    for ap in s.by_kind.get("AuthorizationPolicy", {}).values():
        spec = ap.doc.get("spec") or {}
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        selected = s.workloads((spec.get("selector") or {}).get("matchLabels") or {})
        if any(kube.is_portcullis(c) for w in selected for c in kube.pod_spec(w).get("containers", [])):
            allowed = {p for r in spec.get("rules", []) or [] for t in r.get("to", []) or [] for p in (t.get("operation") or {}).get("ports", []) or []}
            for port, what in ((s.ext_authz_port, "the checks"), (s.listen_port, "the login endpoints")):
                if str(port) not in allowed:
                    errors.append(f"{ap.label}: no rule allows portcullis' port {port}: {what} would be refused")
        for i, rule in enumerate(spec.get("rules", []) or []):
            ports = {p for t in rule.get("to", []) or [] for p in (t.get("operation") or {}).get("ports", []) or []}
            principals = [p for f in rule.get("from", []) or [] for p in (f.get("source") or {}).get("principals", []) or []]
            if str(s.ext_authz_port) in ports and not principals:
                errors.append(f"{ap.label}: rules[{i}] lets anyone reach the ext_authz port {s.ext_authz_port}")
            for principal in principals:
                parts = principal.split("/")
                if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
                    errors.append(f"{ap.label}: principal {principal!r} is not <trust domain>/ns/<namespace>/sa/<service account>")
                    continue
                errors += s.namespace_error(f"{ap.label}: principal {principal}", parts[2])
                users = [w for w in custom.values() if (kube.pod_spec(w) or {}).get("serviceAccountName") == parts[4]]
                if not users:
                    errors.append(f"{ap.label}: principal {principal}: no workload checked by portcullis runs as ServiceAccount {parts[4]!r}")
    return errors


def _vs_route_for(http: list[dict], path: str) -> dict | None:
    for route in http:
        matches = route.get("match") or [{}]
        for m in matches:
            if set(m) - {"uri", "name"} or set(m.get("uri") or {}) - {"exact", "prefix"}:
                raise ValueError(f"route {route.get('name')}: only uri exact/prefix matches are checked; extend extauthz.py")
            uri = m.get("uri") or {}
            if not uri or path == uri.get("exact") or ("prefix" in uri and path.startswith(uri["prefix"])):
                return route
    return None


def _virtual_service_errors(s: Example, custom: dict[str, kube.Obj]) -> list[str]:
    errors = []
    gateways = s.by_kind.get("Gateway", {})
    for vs in s.by_kind.get("VirtualService", {}).values():
        spec = vs.doc.get("spec") or {}
        for g in spec.get("gateways", []) or []:
            name = g.split("/")[-1]
            if g != "mesh" and (name not in gateways or gateways[name].doc.get("apiVersion", "").split("/")[0] != "networking.istio.io"):
                errors.append(f"{vs.label}: gateway {g!r} is not an Istio Gateway of the set")
        http = spec.get("http", []) or []
        for route in http:
            for d in route.get("route", []) or []:
                host, number = d["destination"]["host"], (d["destination"].get("port") or {}).get("number")
                if s.service_port(host.split(".")[0], number) is None:
                    errors.append(f"{vs.label}: route {route.get('name')}: destination {host}:{number} is not a Service port of the set")
                elif "." in host:
                    errors += s.namespace_error(f"{vs.label}: destination {host}", host.split(".")[1])

        def route_of(path: str, http=http) -> str:
            route = _vs_route_for(http, path)
            if route is None:
                return "none"
            if "directResponse" in route:
                return "direct"
            ds = {s.destination(d["destination"]["host"].split(".")[0], (d["destination"].get("port") or {}).get("number")) for d in route.get("route", []) or []}
            return ds.pop() if len(ds) == 1 else "?"

        checked_services = _custom_services(s, custom)
        errors += _routing_errors(vs.label, route_of, s, lambda d, checked=checked_services: d[4:] in checked)
    return errors


def _custom_services(s: Example, custom: dict[str, kube.Obj]) -> set[str]:
    """Services whose every workload is checked by a CUSTOM policy."""
    names = set()
    for svc in s.by_kind.get("Service", {}).values():
        ws = s.workloads((svc.doc.get("spec") or {}).get("selector") or {})
        if ws and all(w.name in custom for w in ws):
            names.add(svc.name)
    return names


def _routing_errors(where: str, route_of, s: Example, checked) -> list[str]:
    """route_of(path) -> "login" | "ext_authz" | "app:<Service>" | "direct" | "none" | "?",
    optionally followed by "@<route>" (the HTTPRoute it came through); checked(destination)
    -> whether that application destination is behind portcullis' check."""
    errors = []

    def shown(d: str) -> str:
        return d.replace("app:", "Service ").replace("@", " through HTTPRoute ")

    try:
        for path in LOGIN_PATHS + [s.callback]:
            if route_of(path).split("@")[0] != "login":
                errors.append(f"{where}: {path} is not routed to portcullis' HTTP port ({s.listen_port})")
        for path in FORWARD_AUTH_PATHS:
            if route_of(path).split("@")[0] in ("login", "ext_authz"):
                errors.append(f"{where}: {path} is routed to portcullis from outside (a page script would get the identity)")
        for path in APP_PATHS:
            d = route_of(path)
            if not d.startswith("app:"):
                errors.append(f"{where}: {path} goes to {shown(d)!r}, not to the application")
            elif not checked(d):
                errors.append(f"{where}: {path} reaches {shown(d)} without portcullis' check")
    except ValueError as e:
        errors.append(f"{where}: {e}")
    return errors


# ---------------------------------------------------------------------------------------------
# Gateway API and Envoy Gateway


def _policies_with_ext_auth(s: Example) -> dict[str, kube.Obj]:
    """HTTPRoute name -> the SecurityPolicy with extAuth that targets it."""
    targeted = {}
    for sp in s.by_kind.get("SecurityPolicy", {}).values():
        spec = sp.doc.get("spec") or {}
        if "extAuth" not in spec:
            continue
        for ref in (spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else []):
            if ref.get("kind") == "HTTPRoute":
                targeted[ref.get("name")] = sp
    return targeted


def _gw_path_match(m: dict, path: str) -> tuple[int, int] | None:
    """Gateway API precedence of a match for path (higher wins), or None if it does not match."""
    p = m.get("path") or {"type": "PathPrefix", "value": "/"}
    if set(m) - {"path"} or p.get("type") not in ("Exact", "PathPrefix"):
        raise ValueError(f"match {m}: only Exact and PathPrefix path matches are checked; extend extauthz.py")
    value = p.get("value", "/")
    if p["type"] == "Exact":
        return (2, len(value)) if path == value else None
    prefix = value.rstrip("/")
    return (1, len(prefix)) if path == prefix or path.startswith(prefix + "/") or prefix == "" else None


def _http_route_errors(s: Example) -> list[str]:
    errors = []
    routes = s.by_kind.get("HTTPRoute", {})
    gateways = s.by_kind.get("Gateway", {})
    policies = _policies_with_ext_auth(s)
    hosts: dict[str, list[tuple[kube.Obj, dict]]] = {}
    for r in routes.values():
        spec = r.doc.get("spec") or {}
        for ref in spec.get("parentRefs", []) or []:
            g = gateways.get(ref.get("name"))
            if g is None or g.doc.get("apiVersion", "").split("/")[0] != "gateway.networking.k8s.io":
                errors.append(f"{r.label}: parentRef {ref.get('name')!r} is not a Gateway API Gateway of the set")
            errors += s.namespace_error(f"{r.label}: parentRef", ref["namespace"]) if "namespace" in ref else []
        for rule in spec.get("rules", []) or []:
            for b in rule.get("backendRefs", []) or []:
                if b.get("kind", "Service") != "Service" or s.service_port(b.get("name"), b.get("port")) is None:
                    errors.append(f"{r.label}: backendRef {b.get('name')}:{b.get('port')} is not a Service port of the set")
            for h in spec.get("hostnames", []) or ["*"]:
                hosts.setdefault(h, []).append((r, rule))

    for host, rules in hosts.items():

        def route_of(path: str, rules=rules) -> str:
            best = None
            for r, rule in rules:
                for m in rule.get("matches") or [{}]:
                    rank = _gw_path_match(m, path)
                    if rank and (best is None or rank > best[0]):
                        best = (rank, r, rule)
            if best is None:
                return "none"
            _, r, rule = best
            targets = {s.destination(b.get("name"), b.get("port")) for b in rule.get("backendRefs", []) or []}
            d = targets.pop() if len(targets) == 1 else "?"
            return f"{d}@{r.name}"

        where = f"HTTPRoutes for {host}"
        errors += _routing_errors(where, route_of, s, lambda d: d.split("@")[1] in policies)
        for path in LOGIN_PATHS + [s.callback]:
            d = route_of(path)
            if "@" in d and d.split("@")[1] in policies:
                errors.append(f"{where}: {path} goes through HTTPRoute {d.split('@')[1]}, which portcullis checks: the login would need a login")
    return errors


def _security_policy_errors(s: Example) -> list[str]:
    errors = []
    routes = s.by_kind.get("HTTPRoute", {})
    for sp in s.by_kind.get("SecurityPolicy", {}).values():
        spec = sp.doc.get("spec") or {}
        for ref in (spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else []):
            if ref.get("kind") != "HTTPRoute" or ref.get("name") not in routes:
                errors.append(f"{sp.label}: targetRef {ref.get('kind')}/{ref.get('name')} is not an HTTPRoute of the set")
        ext = spec.get("extAuth")
        if ext is None:
            continue
        grpc = ext.get("grpc")
        if grpc is None:
            errors.append(f"{sp.label}: extAuth without grpc (the gRPC form is the one this example shows)")
            continue
        refs = (grpc.get("backendRefs") or []) + ([grpc["backendRef"]] if grpc.get("backendRef") else [])
        if not refs:
            errors.append(f"{sp.label}: extAuth.grpc names no backend")
        for b in refs:
            if b.get("namespace"):
                errors += s.namespace_error(f"{sp.label}: backendRef", b["namespace"])
            problem = s.reaches_ext_authz(b.get("name"), b.get("port"))
            if problem:
                errors.append(f"{sp.label}: extAuth.grpc backend {problem}")
        if ext.get("failOpen") is True:
            errors.append(f"{sp.label}: extAuth.failOpen lets requests through when portcullis does not answer")
        sent = {h.lower() for h in ext.get("headersToExtAuth") or []}
        if sent and not {"cookie", "authorization"} <= sent:
            errors.append(f"{sp.label}: extAuth.headersToExtAuth leaves out Cookie or Authorization, which portcullis decides on")
    return errors


def _isolation_errors(s: Example) -> list[str]:
    """Behind Envoy Gateway, nothing but the proxies may reach the application (it would bypass
    the check) or portcullis (whoever reaches ext_authz may ask about any request): each of
    their workloads needs a NetworkPolicy whose every ingress rule names its sources."""
    if not s.by_kind.get("SecurityPolicy"):
        return []
    errors = []
    backends = {b.get("name") for r in s.by_kind.get("HTTPRoute", {}).values() for rule in (r.doc.get("spec") or {}).get("rules", []) or [] for b in rule.get("backendRefs", []) or []}
    for name in sorted(backends):
        svc = s.by_kind.get("Service", {}).get(name)
        for w in s.workloads(((svc.doc.get("spec") or {}).get("selector") or {}) if svc else {}):
            isolated = any(
                kube._selector_matches(((np.doc.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}, kube.pod_labels(w))
                and "Ingress" in ((np.doc.get("spec") or {}).get("policyTypes") or ["Ingress"])
                and all(rule.get("from") for rule in (np.doc.get("spec") or {}).get("ingress", []) or [])
                for np in s.by_kind.get("NetworkPolicy", {}).values()
            )
            if not isolated:
                errors.append(f"{w.label}: no NetworkPolicy limits who reaches it (Service {name} is behind the Gateway)")
    return errors
