"""Every filterdb module a dvc.yaml stage's command imports lies under one of the stage's deps.

Otherwise a code change could leave that stage's outputs stale: ``dvc repro`` would not re-run it.
The imports are resolved statically, over-approximating: the ``cmd_*`` function of the command
in ``filterdb/cli.py`` (with the cli helpers it calls), then every import of every module reached
(top level and inside functions), plus module names written as strings (``importlib`` tables
such as ``params.yaml``'s section classes).

Exception, the ``train`` stage: its command ``filterdb train`` goes through ``filterdb/cli.py``,
which is not one of its deps (only ``filterdb/train``, ``filterdb/numerics.py`` and
``filterdb/atomic`` are, so that the stage's dependency hash covers the training code alone).
The modules the command line itself loads to parse its arguments and ``params.yaml`` (``main``,
``_params`` and ``_entry``, run in a fresh interpreter) are allowed there. ``KNOWN_GAPS`` would
list any other exception (none).
"""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "filterdb"
CLI = PACKAGE / "cli.py"

#: stage -> modules its command imports that none of its deps covers, and why it is left so.
KNOWN_GAPS: dict[str, set[str]] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports_in(node: ast.AST, module: str) -> set[str]:
    """filterdb modules imported anywhere under ``node`` (and parent packages, which run too)."""
    found: set[str] = set()
    for n in ast.walk(node):
        names: list[str] = []
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            names = [n.module, *(f"{n.module}.{a.name}" for a in n.names)]
        elif isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            names = [n.value]
        for name in names:
            if name in MODULES:
                parts = name.split(".")
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    found.discard(module)
    return found


def _closure(start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m == "filterdb":
            continue  # its lazy imports (open_release, the accessor) serve users, not commands
        todo += _imports_in(ast.parse(MODULES[m].read_text()), m) - seen
    return seen


def _cli_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(CLI.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _command_function(words: list[str]) -> str:
    """The cli function a ``filterdb ...`` command runs (from the parser's set_defaults)."""
    from filterdb.cli import build_parser

    args, _ = build_parser().parse_known_args(words)
    return args.func.__name__


def _function_imports(name: str) -> set[str]:
    """Modules a cli function imports, following the cli helpers (``_x``) it calls."""
    functions = _cli_functions()
    seen, todo, modules = set(), [name], set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        node = functions[f]
        modules |= _imports_in(node, "filterdb.cli")
        todo += [
            n.func.id for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions
        ]
    return modules


def _cli_parsing_modules() -> set[str]:
    """What the command line loads before a ``train`` command runs: cli.py, ``main``'s imports,
    and parsing ``params.yaml`` with its zoo entries (run in a fresh interpreter)."""
    trained = next(iter(yaml.safe_load((REPO / "params.yaml").read_text())["trained"]))
    code = (
        "import sys, filterdb.cli as c\n"
        "from filterdb.errors import USER_ERRORS\n"
        "from filterdb.optional import missing_extra\n"
        f"a = c.build_parser().parse_args(['train', {trained!r}])\n"
        "c._entry(a, c._params(a))\n"
        "print(' '.join(m for m in sys.modules if m.split('.')[0] == 'filterdb'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def _covered(module: str, deps: list[str]) -> bool:
    path = MODULES[module].relative_to(REPO).as_posix()
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def _stage_commands() -> list[tuple[str, list[str], list[str]]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = []
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        for part in stage["cmd"].split("&&"):
            words = shlex.split(part.split(">")[0].replace("${key}", "MODEL")
                                .replace("${release.version}", "0.0.0"))
            if words and words[0] == "filterdb":
                out.append((name, words[1:], deps))
    return out


@pytest.mark.parametrize(("stage", "words", "deps"), _stage_commands(),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_stage_deps_cover_every_module_its_command_imports(stage, words, deps):
    imported = _closure(_function_imports(_command_function(words)))
    assert imported, "the command imports no filterdb module: the resolution is broken"
    allowed = set(KNOWN_GAPS.get(stage, ()))
    if stage == "train":
        allowed |= _cli_parsing_modules()
    uncovered = sorted(m for m in imported - allowed if not _covered(m, deps))
    assert not uncovered, f"stage {stage!r}: not under its deps {deps}: {uncovered}"


def test_train_stage_needs_its_exception():
    """The train stage's closure really reaches beyond its deps only through the CLI."""
    imported = _closure(_function_imports(_command_function(["train", "MODEL"])))
    assert "filterdb.train.recipe" in imported and "filterdb.numerics" in imported


def test_validate_stage_follows_the_schemas():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = stages["validate"]["deps"]
    schemas = [d for d in deps if "schemas" in d]
    assert schemas and all((REPO / d).is_dir() for d in schemas)
