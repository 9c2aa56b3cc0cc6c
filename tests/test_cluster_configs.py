"""The cluster configs in cluster/: each parses and has what its tool requires, token auth is
on everywhere, the dashboard stays on localhost, no secret is in the repository, and every
`hidden ...` command they (and cluster/README.md) use is one the CLI really has."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHERS = {"aws": CLUSTER / "aws.yaml", "gcp": CLUSTER / "gcp.yaml"}
KUBERAY = {
    "raycluster": CLUSTER / "kuberay" / "raycluster.yaml",
    "rayjob": CLUSTER / "kuberay" / "rayjob.yaml",
}
TEMPLATES = {**LAUNCHERS, **KUBERAY}
README = CLUSTER / "README.md"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RAY_VERSION = importlib.metadata.version("ray")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def strings(obj: object) -> Iterator[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from strings(value)


def render(path: Path) -> dict:
    """The template with every ${VAR} replaced by a harmless dummy value."""
    return yaml.safe_load(
        PLACEHOLDER.sub(lambda m: f"dummy-{m.group(1).lower()}", path.read_text())
    )


def start_commands(cfg: dict) -> list[str]:
    return [*cfg["head_start_ray_commands"], *cfg["worker_start_ray_commands"]]


# ----------------------------------------------------------------------------- YAML basics
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_yaml_parses(name):
    assert isinstance(load(TEMPLATES[name]), dict)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_has_required_keys(name):
    cfg = load(LAUNCHERS[name])
    for key in (
        "cluster_name",
        "provider",
        "auth",
        "available_node_types",
        "head_node_type",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
        "max_workers",
    ):
        assert key in cfg, f"{name}: missing {key}"
    assert cfg["provider"]["type"] == name
    assert cfg["auth"]["ssh_user"]
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert workers, "no worker node type"
    # Autoscaling GPU workers that start from zero, and an optional spot type.
    assert all(w.get("min_workers", 0) == 0 for w in workers.values())
    assert any(w.get("max_workers", 0) > 0 for w in workers.values())
    assert any("spot" in k for k in workers)
    assert types[cfg["head_node_type"]]["resources"].get("CPU") == 0, (
        "trials must not run on the head"
    )
    # The project is installed on every node from the archive that file_mounts copies.
    (remote,) = cfg["file_mounts"]
    assert any(remote.split("/")[-1] in c and "pip install" in c for c in cfg["setup_commands"])


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_passes_rays_own_schema(name):
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    validate_config(fillout_defaults(render(LAUNCHERS[name])))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_ray_version_matches_the_installed_one(name):
    text = TEMPLATES[name].read_text()
    pins = set(re.findall(r"ray\[default\]==([0-9.]+)", text)) | set(
        re.findall(r"rayVersion:\s*\"?([0-9.]+)", text)
    )
    assert pins == {RAY_VERSION}, f"{name} pins Ray {pins}, the project uses {RAY_VERSION}"


# ----------------------------------------------------------------------------- security
@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_turns_token_auth_on_for_every_ray_start(name):
    cfg = load(LAUNCHERS[name])
    starts = [c for c in start_commands(cfg) if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert re.search(r"(^|[\s;])RAY_AUTH_MODE=token\s+ray start\b", cmd), cmd
    # Interactive shells and Ray CLIs on the nodes (ray status, ray job, drivers) too.
    assert any("export RAY_AUTH_MODE=token" in c for c in cfg["setup_commands"])
    # The token comes from the cloud's secret store into ~/.ray/auth_token, private.
    fetch = [c for c in cfg["setup_commands"] if "~/.ray/auth_token" in c]
    assert len(fetch) == 1
    assert "umask 077" in fetch[0]
    assert ("secretsmanager" in fetch[0]) if name == "aws" else ("gcloud secrets" in fetch[0])
    assert "RAY_AUTH_TOKEN=" not in "\n".join(strings(cfg))


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_dashboard_on_localhost_only(name):
    cfg = load(LAUNCHERS[name])
    (head,) = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    assert "--head" in head and "--dashboard-host=127.0.0.1" in head
    assert not [s for s in strings(cfg) if "0.0.0.0" in s]


def test_aws_names_its_security_group_so_ray_creates_none():
    # Ray's own group for a node type without SecurityGroupIds opens SSH to 0.0.0.0/0.
    cfg = load(LAUNCHERS["aws"])
    assert "security_group" not in cfg["provider"]
    for name, node_type in cfg["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds") == ["${HIDDEN_SG}"], name
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].startswith("${HIDDEN_")


def test_gcp_nodes_live_in_their_own_network():
    cfg = load(LAUNCHERS["gcp"])
    for name, node_type in cfg["available_node_types"].items():
        (nic,) = node_type["node_config"]["networkInterfaces"]
        assert nic["subnetwork"].endswith("/subnetworks/hidden-ray"), name
        assert node_type["node_config"]["serviceAccounts"][0]["email"].startswith("hidden-ray-")


def _kuberay_cluster_specs() -> dict[str, dict]:
    return {
        "raycluster": load(KUBERAY["raycluster"])["spec"],
        "rayjob": load(KUBERAY["rayjob"])["spec"]["rayClusterSpec"],
    }


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_has_required_keys(name):
    doc = load(KUBERAY[name])
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == {"raycluster": "RayCluster", "rayjob": "RayJob"}[name]
    assert doc["metadata"]["name"]
    spec = _kuberay_cluster_specs()[name]
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    groups = spec["workerGroupSpecs"]
    assert groups and all(g["minReplicas"] == 0 and g["maxReplicas"] > 0 for g in groups)
    assert spec["enableInTreeAutoscaling"] is True
    gpu = [
        c
        for g in groups
        for c in g["template"]["spec"]["containers"]
        if "nvidia.com/gpu" in c["resources"]["limits"]
    ]
    assert gpu, "no GPU worker group"
    if name == "rayjob":
        job = doc["spec"]
        assert job["entrypoint"].startswith("hidden sweep run ")
        assert "--address auto" in job["entrypoint"] and "--results" in job["entrypoint"]
        # The submitter runs in the head pod and reaches the job API on 127.0.0.1.
        assert job["submissionMode"] == "SidecarMode"
        assert spec["headGroupSpec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_token_auth_from_a_secret_and_dashboard_on_localhost(name):
    spec = _kuberay_cluster_specs()[name]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["authOptions"]["secretName"]  # the token lives in a Kubernetes Secret
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            for env in container.get("env", []):
                assert env["name"] != "RAY_AUTH_TOKEN" or "value" not in env, "token literal"
                assert env["name"] != "RAY_AUTH_MODE" or env.get("value") == "token"
    assert not [s for s in strings(load(KUBERAY[name])) if "0.0.0.0" in s]


def _repo_text_files() -> Iterator[Path]:
    skip = {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        "results",
        "data",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
        "plots",
    }
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for path in folder.iterdir():
            if path.is_dir():
                if path.name not in skip and not path.name.endswith(".egg-info"):
                    stack.append(path)
            elif path.is_file() and path.stat().st_size < 2_000_000:
                yield path


SECRET_PATTERNS = [
    re.compile("-----BEGIN [A-Z ]*" + "PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # an AWS access key id
    re.compile(r"RAY_AUTH_TOKEN['\"]?\s*[=:]\s*['\"]?(?![$<{])[A-Za-z0-9+/=_.-]{16,}"),
    re.compile(r"auth_token['\"]?\s*[=:]\s*['\"][A-Za-z0-9+/=_.-]{16,}['\"]"),
    re.compile("--from-literal=" + "auth_token"),  # a token typed on a command line
]


def test_no_secret_literal_in_the_repository():
    found = []
    for path in _repo_text_files():
        data = path.read_bytes()
        if b"\0" in data:
            continue
        text = data.decode("utf-8", errors="replace")
        for pattern in SECRET_PATTERNS:
            found += [
                f"{path.relative_to(ROOT)}: {m.group(0)[:40]}" for m in pattern.finditer(text)
            ]
        if path.is_relative_to(CLUSTER):  # a token-like 32+ byte hex/base64 literal
            found += [
                f"{path.relative_to(ROOT)}: {m.group(0)[:12]}..."
                for m in re.finditer(r"(?<![\w/.-])[0-9a-f]{64}(?![\w/-])", text)
            ]
    assert not found, "secret-like literals:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- README
def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console|shell)?\n(.*?)```", text, flags=re.S)


def _shell_lines(block: str) -> Iterator[str]:
    """Logical command lines of a shell block: continuations joined, heredoc bodies and
    comments dropped."""
    lines = iter(block.replace("\\\n", " ").splitlines())
    for line in lines:
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if not line.strip().startswith("#"):
            yield line
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break


def _segments(line: str) -> Iterator[list[str]]:
    """Simple commands of a shell line, as token lists (split at && || ; | ( ) and `--`
    of `ray job submit`, whose command follows it)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError:
        tokens = line.split()
    current: list[str] = []
    for tok in tokens:
        if tok in ("&&", "||", ";", "|", "(", ")", "$(", "--", "&", ">", "<", ">>"):
            if current:
                yield current
            current = []
        else:
            current.append(tok)
    if current:
        yield current


def _program_args(segment: list[str], program: str) -> list[str] | None:
    i = 0
    while i < len(segment) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[i]):
        i += 1  # VAR=value prefixes
    if i < len(segment) and (segment[i] == program or segment[i].endswith("/" + program)):
        return segment[i + 1 :]
    return None


def commands_in(text: str, program: str) -> list[list[str]]:
    found = []
    for line in text.splitlines():
        for segment in _segments(line):
            args = _program_args(segment, program)
            if args is not None:
                found.append(args)
    return found


def _readme_shell_text() -> str:
    return "\n".join(
        line for block in _code_blocks(README.read_text()) for line in _shell_lines(block)
    )


def _hidden_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every full `hidden ...` command in README code blocks and YAMLs."""
    found = [("README.md", argv) for argv in commands_in(_readme_shell_text(), "hidden") if argv]
    for path in TEMPLATES.values():
        for value in strings(load(path)):
            if " " not in value.strip():
                continue  # a name ("hidden"), not a command line
            found += [
                (path.name, argv) for argv in commands_in(" ".join(value.split()), "hidden") if argv
            ]
    return found


def _inline_hidden_mentions() -> list[list[str]]:
    """`hidden ...` in README prose (inline code): sub-command words only."""
    spans = re.findall(
        r"(?<!`)`(hidden [^`]+)`(?!`)", re.sub(r"```.*?```", "", README.read_text(), flags=re.S)
    )
    return [
        [w for w in shlex.split(span)[1:] if re.fullmatch(r"[a-z][a-z-]*", w)] for span in spans
    ]


HIDDEN_COMMANDS = _hidden_commands()


def test_readme_and_yamls_use_hidden_commands():
    used = {" ".join(argv[:2]) for _, argv in HIDDEN_COMMANDS}
    assert {"sweep run", "sweep status", "results list", "analyze scaling"} <= used, used


def _parser() -> argparse.ArgumentParser:
    from hidden_core.cli import COMMAND_MODULES, build_parser

    try:
        return build_parser()
    except ModuleNotFoundError as err:
        pytest.fail(
            f"hidden_core.cli cannot build its parser yet ({err}); COMMAND_MODULES={COMMAND_MODULES}"
        )


@pytest.mark.parametrize(
    "where,argv", HIDDEN_COMMANDS, ids=[f"{w}: hidden {' '.join(a)}" for w, a in HIDDEN_COMMANDS]
)
def test_hidden_command_is_real(where, argv):
    parser = _parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                pytest.fail(
                    f"{where}: `hidden {' '.join(argv)}` is not a valid command:\n{err.getvalue()}"
                )


def _subcommand_chain_exists(parser: argparse.ArgumentParser, words: list[str]) -> bool:
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return True  # the rest are arguments
        if word not in subs[0].choices:
            return False
        parser = subs[0].choices[word]
    return True


def test_hidden_commands_named_in_readme_prose_exist():
    parser = _parser()
    missing = [
        " ".join(w) for w in _inline_hidden_mentions() if not _subcommand_chain_exists(parser, w)
    ]
    assert not missing, f"README names sub-commands the CLI lacks: {missing}"


def test_readme_ray_commands_exist():
    from ray.scripts.scripts import cli

    bad = []
    for argv in commands_in(_readme_shell_text(), "ray"):
        if not argv or argv[0].startswith("-"):
            continue
        command = cli.commands.get(argv[0])
        if command is None:
            bad.append(f"ray {argv[0]}")
        elif hasattr(command, "commands") and len(argv) > 1 and argv[1] not in command.commands:
            bad.append(f"ray {argv[0]} {argv[1]}")
    assert not bad, f"README uses ray commands that do not exist: {bad}"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_envsubst_lists_exactly_the_templates_placeholders(name):
    path = TEMPLATES[name]
    used = {m for value in strings(load(path)) for m in PLACEHOLDER.findall(value)}
    assert used, f"{name} has no placeholders?"
    rel = path.relative_to(ROOT).as_posix()
    for source, text in (("README.md", README.read_text()), (path.name, path.read_text())):
        lists = re.findall(r"envsubst '([^']*)' < " + re.escape(rel), text)
        assert lists, f"{source} has no `envsubst '...' < {rel}` command"
        for listed in lists:
            assert set(PLACEHOLDER.findall(listed)) == used, f"{source}: envsubst list for {rel}"


def test_readme_covers_the_security_model():
    text = README.read_text()
    for needle in (
        "CVE-2023-48022",
        "ShadowRay",
        "RAY_AUTH_MODE=token",
        "--dashboard-host=127.0.0.1",
        "listen on all interfaces",
        "firewall",
        "ray get-auth-token --generate",
        "RAY_AUTH_TOKEN_PATH",
        "kubectl port-forward",
        "ray dashboard",
    ):
        assert needle in text, needle
    # The full path from an account to plots and back down.
    for needle in (
        "ray up -y ~/hidden-aws.yaml",
        "ray job submit",
        "ray down -y ~/hidden-aws.yaml",
        "hidden analyze scaling",
        "hidden results",
    ):
        assert needle in text, needle
