"""Repository layout and public-surface guards (design.md §2.1, §2.2 and §4 "Guards").

Why: these are the promises a user or a reviewer relies on without reading code: the stdlib `platform` module is
not shadowed by our source root, the top-level folders are where the README says, `import seriesforge` is cheap,
one registry drives the CLI, and the CLI does not grow or lose flags by accident.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

REQUIRED_PATHS = ("platform/seriesforge", "jobs", "serve", "cluster", "tests", "ray_cluster.yaml",
                  "pyproject.toml", "README.md", "Makefile", ".ci/run")

# Changing the CLI means changing this pin deliberately (and the README / --help examples with it).
# subcommand path -> sorted option strings of that parser (positionals have none).
CLI_FLAGS: dict[tuple[str, ...], list[str]] = {
    (): ["--help", "-h"],
    ("data",): ["--help", "-h"],
    ("data", "captions"): ["--help", "-h"],
    ("data", "captions", "inspect"): ["--help", "-h"],
    ("data", "captions", "make"): ["--format", "--help", "--lengths", "--n", "--out", "--seed", "-h"],
    ("data", "ucr"): ["--help", "-h"],
    ("data", "ucr", "inspect"): ["--help", "-h"],
    ("data", "ucr", "prepare"): ["--datasets", "--help", "--on-bad-row", "--out", "--resplit", "--seed", "-h"],
    ("eval",): ["--address", "--checkpoint", "--data", "--help", "--holdout-fraction", "--lengths", "--metrics",
                "--n", "--out", "--protocol", "--real-vs-real", "--refine", "--repeats", "--seed", "--steps", "-h"],
    ("eval", "fcn"): ["--help", "-h"],
    ("eval", "fcn", "train"): ["--cache", "--data", "--epochs", "--help", "--seed", "-h"],
    ("generate",): ["--api-key-env", "--caption", "--checkpoint", "--endpoint", "--guidance", "--help", "--label",
                    "--length", "--model", "--n", "--out", "--refine", "--samples-per-caption", "--seed", "--steps",
                    "-h"],
    ("jobs",): ["--help", "-h"],
    ("jobs", "list"): ["--address", "--help", "-h"],
    ("jobs", "logs"): ["--address", "--follow", "--help", "-h"],
    ("jobs", "status"): ["--address", "--help", "-h"],
    ("jobs", "stop"): ["--address", "--help", "-h"],
    ("serve",): ["--api-key-env", "--checkpoint", "--config", "--help", "--host", "--port", "-h"],
    ("submit",): ["--address", "--env", "--follow", "--help", "--pip", "--spec", "--storage", "--submission-id", "-h"],
    ("tune",): ["--address", "--config", "--data", "--help", "--max-concurrent", "--metric", "--mode", "--out",
                "--preset", "--resume", "--scheduler", "--search", "--space", "--trials", "-h"],
    ("train",): ["--address", "--config", "--data", "--from", "--help", "--out", "--preset", "--resume", "--set",
                 "--stage", "--strategy", "--workers", "-h"],
}


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter of this venv, from the repo root (where `platform/` is a plain dir)."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"python -c {code!r} failed:\n{proc.stderr}"
    return proc.stdout.strip()


def subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield (subcommand path, parser) for the parser and every nested subcommand, via argparse internals."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subparsers(sub, path + (name,))


@pytest.fixture(scope="module")
def cli_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    from seriesforge.cli import build_parser

    return dict(subparsers(build_parser()))


def test_platform_is_not_a_package():
    """A `platform/__init__.py` would make `platform` a package that shadows the stdlib module of that name."""
    assert not (ROOT / "platform" / "__init__.py").exists(), "platform/ is a source root, not a package"


def test_stdlib_platform_still_works_from_repo_root():
    """From the repo root (cwd on sys.path) with seriesforge installed, `platform` must still be the stdlib."""
    out = run_python("import platform, seriesforge; print(platform.system()); print(platform.__file__); "
                     "print(seriesforge.__file__)")
    system, platform_file, package_file = out.splitlines()
    assert system, f"platform.system() returned nothing:\n{out}"
    assert Path(platform_file).name == "platform.py", f"`platform` resolved to {platform_file}"
    assert Path(package_file).resolve().is_relative_to(ROOT / "platform" / "seriesforge"), package_file


@pytest.mark.parametrize("rel", REQUIRED_PATHS)
def test_required_top_level_path_exists(rel: str):
    """The layout of design.md §2.1: the README, CI and job submission all name these paths."""
    assert (ROOT / rel).exists(), f"missing top-level path: {rel}"


def test_import_seriesforge_is_cheap():
    """`import seriesforge` must not drag in Ray, DeepSpeed, torch or a family: the CLI's --help and every
    light tool (config checks, serve schemas) import it."""
    out = run_python("import sys, seriesforge; print(' '.join(sorted(sys.modules)))")
    loaded = out.split()
    heavy = [m for m in loaded if m.split(".")[0] in {"ray", "deepspeed", "torch"}
             or m.startswith("seriesforge.families")]
    assert not heavy, f"`import seriesforge` imported: {heavy}"


def test_registry_drives_cli_family_choices(cli_parsers):
    """One table of families (the registry): the CLI must offer exactly its names, in the same order."""
    from seriesforge import registry

    family = [a for a in cli_parsers[("train",)]._actions if a.dest == "family"]
    assert len(family) == 1, "`seriesforge train` has no FAMILY positional"
    assert list(family[0].choices) == registry.names()
    assert registry.names(), "the registry is empty"


def test_cli_flags_are_pinned(cli_parsers):
    """The CLI is an interface: a flag added, renamed or dropped must show up as a deliberate pin change."""
    actual = {path: sorted(s for a in p._actions for s in a.option_strings) for path, p in cli_parsers.items()}
    assert actual == CLI_FLAGS
