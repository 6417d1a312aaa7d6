"""The README's "## Deploy" and "## nginx `auth_request`" sections, checked against this run.

Why: those sections are what people copy. A snippet that drifted from the file it shows, or a
command naming a Secret, key, directory or values file the manifests disagree with, fails for
the reader at `kubectl apply` time, and nothing in CI would notice. So every fenced block in
them must be accounted for:

- `<!-- snippet: PATH -->` on the line right above a block: the block is PATH byte for byte
  (plus the final newline), and PATH is a file this run validates (Deploy.files), so the text
  people copy is the text that was checked.
- ```sh blocks: each command must be one of COMMANDS, and is checked the way the reader would
  run it from the repository root, without running a shell (`$VAR` and `$(...)` stay literal).
- anything else fails: a block nothing checks is a block that can rot.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import kube

SECTIONS = ("## Deploy", "## nginx `auth_request`")
MARKER = re.compile(r"^<!-- snippet: (\S+) -->$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
# Files the end-to-end suite runs as they are: accepted by name, as long as the suite names them.
E2E_TESTED = {"deploy/nginx/auth-request.conf": "tests/e2e/nginx.test.mjs"}

# An image reference as `docker build -t` takes it (distribution/reference, without a digest).
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass
class Deploy:
    """What validate.py validated in this run, and how it validates more. A README claim is
    accepted only when it is covered here, so the README cannot point at unchecked files."""

    root: Path
    check: Callable[..., bool]  # validate.check: one summary line per check
    files: set[str]  # repository-relative paths validated by this run
    kustomizations: dict[str, list[kube.Obj]]  # directory -> the objects `kubectl apply -k` applies
    dockerfile: str  # repository-relative
    chart: str  # repository-relative
    render: Callable[[str, list[Path]], tuple[str | None, str]]  # helm 3 template RELEASE -f ...
    load_objects: Callable[[str, str], list[kube.Obj]]
    validate_objects: Callable[[str, list[kube.Obj]], None]  # schemas, references, posture, config


@dataclass
class Block:
    line: int  # of the opening fence (of the marker, for a marker without a block)
    lang: str
    lines: list[str] = field(default_factory=list)
    snippet: str | None = None
    marker_line: int = 0
    error: str | None = None


@dataclass
class Section:
    """What the commands of one section have done so far: a Secret must be created before
    (above) the command that needs it, in the same section."""

    created: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # name -> (where, keys)
    rendered: list[tuple[str, list[kube.Obj]]] = field(default_factory=list)  # to validate next


def parse(text: str) -> tuple[dict[str, list[Block]], list[str]]:
    """The fenced blocks of each section in SECTIONS. Headings inside blocks do not count."""
    lines = text.split("\n")
    sections: dict[str, list[Block]] = {}
    problems: list[str] = []
    current: list[Block] | None = None
    block: Block | None = None
    fence = ""
    marker: tuple[int, str] | None = None
    for n, line in enumerate(lines, 1):
        if block is not None:
            closing = line.strip()
            if len(line) - len(line.lstrip(" ")) <= 3 and len(closing) >= len(fence) and set(closing) == {fence[0]}:
                if current is not None:
                    current.append(block)
                block = None
            else:
                block.lines.append(line)
            continue
        m = FENCE.match(line)
        if m:
            fence = m.group(1)
            block = Block(line=n, lang=m.group(2))
            if marker is not None:  # set by the line just above
                block.marker_line, block.snippet = marker
            marker = None
            continue
        if marker is not None and current is not None:
            current.append(Block(line=marker[0], lang="", marker_line=marker[0], snippet=marker[1],
                                 error=f"README.md:{marker[0]}: the snippet marker is not directly followed by a ``` line"))
        marker = None
        if line.startswith("## "):
            current = sections.setdefault(line, []) if line.startswith(SECTIONS) else None
        m = MARKER.match(line)
        if m:
            marker = (n, m.group(1))
    if block is not None:
        problems.append(f"README.md:{block.line}: code block never closed")
    for heading in SECTIONS:
        if not any(s.startswith(heading) for s in sections):
            problems.append(f"no README section starts with {heading!r}: its snippets would go unchecked")
    return sections, problems


def shell_commands(lines: list[str], first: int) -> list[tuple[int, list[str] | str]]:
    """(line, argv or error) for each command: backslash-newlines joined, blank lines and
    comments skipped, words split as the shell would (without expanding anything)."""
    out: list[tuple[int, list[str] | str]] = []
    pending, start = "", 0
    for n, raw in enumerate(lines, first):
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        start = start or n
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        try:
            out.append((start, shlex.split(pending + raw, comments=True)))
        except ValueError as e:
            out.append((start, f"README.md:{start}: cannot split the command: {e}"))
        pending, start = "", 0
    if start:
        out.append((start, f"README.md:{start}: the command ends with a backslash"))
    return out


def norm(path: str) -> str:
    """A repository-relative path as the commands use it from the root (`dir/` = `dir`)."""
    p = os.path.normpath(path)
    return "/" if os.path.isabs(p) or p.startswith("..") else p


def options(where: str, args: list[str], known: dict[str, str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """Splits args into the known options (each takes a value), positionals and errors: an
    option this module does not know might change what the command does, so it fails."""
    opts: dict[str, list[str]] = {}
    positional, errors = [], []
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.partition("=") if a.startswith("--") else (a, "", "")
        if not a.startswith("-") or a == "-":
            positional.append(a)
        elif name in known:
            if not eq:
                i += 1
                if i == len(args):
                    errors.append(f"{where}: {a} without a value")
                    break
                value = args[i]
            opts.setdefault(known[name], []).append(value)
        else:
            errors.append(f"{where}: option {a!r} is not checked here")
        i += 1
    return opts, positional, errors


# ---------------------------------------------------------------------------------------------
# the commands


def create_secret(where: str, args: list[str]) -> tuple[str | None, set[str], list[str]]:
    """`kubectl create secret generic NAME --from-literal=KEY=VALUE ...` -> name, keys, errors."""
    opts, positional, errors = options(where, args, {"--from-literal": "literal"})
    if len(positional) != 1:
        return None, set(), errors + [f"{where}: expected one Secret name, got {positional}"]
    name = positional[0]
    if not kube.DNS1123_SUBDOMAIN.match(name):
        errors.append(f"{where}: {name!r} is not a valid Secret name")
    keys: set[str] = set()
    for literal in opts.get("literal", []):
        key, eq, _ = literal.partition("=")
        if not eq or not SECRET_KEY.match(key):
            errors.append(f"{where}: --from-literal={literal!r} is not KEY=VALUE with a valid key")
        elif key in keys:
            errors.append(f"{where}: key {key!r} given twice")
        keys.add(key)
    if not keys:
        errors.append(f"{where}: a Secret without keys")
    return name, keys, errors


def secret_errors(where: str, objs: list[kube.Obj], created: dict[str, tuple[str, set[str]]]) -> list[str]:
    """Every Secret the pods read is applied with them, or was created before with exactly the
    keys they read (a key nothing reads is a misspelling, unless a pod takes the Secret whole)."""
    errors = []
    applied = {o.name for o in objs if o.kind == "Secret"}
    for name, use in sorted(kube.secret_uses(objs).items()):
        if name in applied:
            continue
        if name not in created:
            errors.append(f"{where}: Secret {name!r} (read by {use.readers[0]}) is not created by a preceding "
                          f"`kubectl create secret generic` (created: {', '.join(sorted(created)) or 'none'})")
            continue
        made_at, keys = created[name]
        missing = use.keys - keys
        extra = set() if use.whole else keys - use.keys - use.optional_keys
        if missing:
            errors.append(f"{made_at}: Secret {name!r} lacks key(s) {sorted(missing)}, read by the objects of {where}")
        if extra:
            errors.append(f"{made_at}: Secret {name!r} has key(s) {sorted(extra)} that nothing reads (it reads {sorted(use.keys)})")
    return errors


def header_secrets(d: Deploy, values: Path) -> tuple[dict[str, tuple[str, set[str]]], list[str]]:
    """The `kubectl create secret generic` commands in a values file's header comment: the
    file's own instructions count as having created the Secret."""
    header = []
    for line in values.read_text().split("\n"):
        if not line.startswith("#"):
            break
        header.append(re.sub(r"^#\s?", "", line))
    rel = values.relative_to(d.root).as_posix() if values.is_relative_to(d.root) else str(values)
    created, errors = {}, []
    for n, argv in shell_commands(header, 1):
        if isinstance(argv, list) and argv[:4] == ["kubectl", "create", "secret", "generic"]:
            name, keys, errs = create_secret(f"{rel}:{n}", argv[4:])
            errors += errs
            if name:
                created[name] = (f"{rel}:{n}", keys)
    return created, errors


def docker_build(d: Deploy, where: str, args: list[str], section: Section) -> list[str]:
    """`docker build -f deploy/Dockerfile -t IMAGE .`: the validated Dockerfile, the root as context."""
    opts, positional, errors = options(where, args, {"-f": "file", "--file": "file", "-t": "tag", "--tag": "tag"})
    files = opts.get("file", ["Dockerfile"])
    if len(files) != 1 or norm(files[0]) != d.dockerfile or d.dockerfile not in d.files:
        errors.append(f"{where}: builds {files}, not the validated {d.dockerfile}")
    if positional != ["."]:
        errors.append(f"{where}: the context must be the repository root `.` (the Dockerfile's COPYs are relative to it), got {positional}")
    if not opts.get("tag"):
        errors.append(f"{where}: no -t IMAGE")
    for tag in opts.get("tag", []):
        if not IMAGE_REF.match(tag) or len(tag.rsplit(":", 1)[0]) > 255:
            errors.append(f"{where}: {tag!r} is not a valid image reference")
    return errors


def kubectl_create_secret(d: Deploy, where: str, args: list[str], section: Section) -> list[str]:
    """Remembers the Secret for the commands below that need it."""
    name, keys, errors = create_secret(where, args)
    if name in section.created:
        errors.append(f"{where}: Secret {name!r} was already created at {section.created[name][0]}")
    elif name:
        section.created[name] = (where, keys)
    return errors


def kubectl_apply_k(d: Deploy, where: str, args: list[str], section: Section) -> list[str]:
    """`kubectl apply -k DIR`: a validated kustomization whose Secrets exist by then."""
    if len(args) != 1:
        return [f"{where}: expected `kubectl apply -k DIR`"]
    directory = norm(args[0])
    if directory not in d.kustomizations:
        return [f"{where}: {args[0]} is not a kustomization directory validated here ({', '.join(sorted(d.kustomizations))})"]
    return secret_errors(where, d.kustomizations[directory], section.created)


def helm_install(d: Deploy, where: str, args: list[str], section: Section) -> list[str]:
    """`helm install RELEASE deploy/helm/portcullis -f VALUES`: rendered by Helm 3 as
    `helm template` and validated like the other renderings; its Secrets exist by then."""
    opts, positional, errors = options(where, args, {"-f": "values", "--values": "values"})
    if len(positional) != 2:
        return errors + [f"{where}: expected `helm install RELEASE {d.chart} -f VALUES`"]
    release, chart = positional
    if norm(chart) != d.chart:
        errors.append(f"{where}: installs {chart!r}, not the validated chart {d.chart}")
    values = [d.root / norm(v) for v in opts.get("values", [])]
    errors += [f"{where}: values file {v} does not exist" for v in opts.get("values", []) if not (d.root / norm(v)).is_file()]
    if errors:
        return errors
    text, error = d.render(release, values)
    if text is None:
        return [f"{where}: helm template {release}: {error}"]
    objs = d.load_objects(text, where)
    section.rendered.append((f"{where}: helm install {release}", objs))
    created = dict(section.created)
    for v in values:
        from_header, header_errors = header_secrets(d, v)
        errors += header_errors
        created = {**from_header, **created}
    return errors + secret_errors(where, objs, created)


COMMANDS: list[tuple[list[str], Callable[[Deploy, str, list[str], Section], list[str]]]] = [
    (["docker", "build"], docker_build),
    (["kubectl", "create", "secret", "generic"], kubectl_create_secret),
    (["kubectl", "apply", "-k"], kubectl_apply_k),
    (["helm", "install"], helm_install),
]


# ---------------------------------------------------------------------------------------------
# the blocks


def snippet_errors(d: Deploy, b: Block) -> list[str]:
    """The block is the file, byte for byte, and the file is validated by this run."""
    where = f"README.md:{b.marker_line}"
    path = norm(b.snippet or "")
    errors = []
    f = d.root / path
    if not f.is_file():
        return [f"{where}: {b.snippet} does not exist"]
    if path in E2E_TESTED:
        suite = d.root / E2E_TESTED[path]
        if not suite.is_file() or path not in suite.read_text():
            errors.append(f"{where}: {path} is accepted as run by {E2E_TESTED[path]}, which no longer names it")
    elif path not in d.files:
        errors.append(f"{where}: {path} is not a file this run validates: show a manifest under deploy/kubernetes/, "
                      f"deploy/examples/*.toml or *.yaml, or {', '.join(E2E_TESTED)}")
    want = f.read_bytes().decode(errors="replace").split("\n")
    got = b.lines + [""]
    if got != want:
        for op, i1, _, j1, _ in difflib.SequenceMatcher(a=got, b=want, autojunk=False).get_opcodes():
            if op != "equal":
                shown = repr(got[i1]) if i1 < len(got) else "(end of block)"
                in_file = repr(want[j1]) if j1 < len(want) else "(end of file)"
                errors.append(f"README.md:{b.line + 1 + i1}: the block differs from {path}:{j1 + 1}: "
                              f"README has {shown}, the file {in_file}")
                break
    return errors


def command_errors(d: Deploy, line: int, argv: list[str], section: Section) -> list[str]:
    for prefix, fn in COMMANDS:
        if argv[: len(prefix)] == prefix:
            return fn(d, f"README.md:{line}", argv[len(prefix):], section)
    return [f"README.md:{line}: no check knows this command"]


def title(line: int, argv: list[str]) -> str:
    """The command as a check name, without the values of --from-literal (secrets, maybe)."""
    shown = [re.sub(r"^(--from-literal=[^=]*=).*", r"\1…", a) for a in argv]
    text = " ".join(shown)
    return f"README.md:{line}: {text if len(text) <= 100 else text[:98] + ' …'}"


def check_readme(d: Deploy, readme: Path) -> None:
    """One check per snippet, per command and per unchecked block, in README order."""
    sections, problems = parse(readme.read_bytes().decode())
    d.check(f"README.md: sections {' and '.join(SECTIONS)}", lambda: problems)
    for blocks in sections.values():
        section = Section()
        for b in blocks:
            if b.error:
                d.check(f"README.md:{b.line}: snippet {b.snippet}", lambda b=b: [b.error])
            elif b.snippet is not None:
                d.check(f"README.md:{b.marker_line}: snippet {b.snippet}", snippet_errors, d, b)
            elif b.lang == "sh":
                for line, argv in shell_commands(b.lines, b.line + 1):
                    if isinstance(argv, str):
                        d.check(f"README.md:{line}: command", lambda e=argv: [e])
                        continue
                    d.check(title(line, argv), command_errors, d, line, argv, section)
                    for name, objs in section.rendered:
                        d.validate_objects(name, objs)
                    section.rendered.clear()
            else:
                kind = f"```{b.lang}" if b.lang else "a ``` block without a language"
                d.check(f"README.md:{b.line}: {kind}", lambda b=b, kind=kind: [
                    f"README.md:{b.line}: {kind} without a `<!-- snippet: PATH -->` line above it: no check knows this block"])
