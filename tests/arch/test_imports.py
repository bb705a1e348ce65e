"""The dependency direction of design.md §2.3, enforced by reading every import (AST, no code is run).

Why: the layers only stay separable (network ⟂ process ⟂ loop ⟂ distribution, families at the edge) if nobody
takes a shortcut "just this once". Imports inside functions count too: a lazy import is still a dependency.
Every .py file under platform/seriesforge and top-level serve/ is scanned, so new modules (tune/, eval/, serve/)
fall under the rules the moment they exist. tests/ is not scanned.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_FAMILY_MODULES = {"base"}  # families/base.py: the hooks' defaults and window helpers every family may use
SCAN_ROOTS = ((ROOT / "platform" / "seriesforge", "seriesforge"), (ROOT / "serve", "serve"))  # (dir, module name)

OTHER_FAMILY = "<another family>"   # seriesforge.families.Y imported from inside seriesforge.families.X, Y != X
ANY_FAMILY = "<a concrete family>"  # seriesforge.families.<name>[...] (the families package itself is not one)
EVERYTHING = ("seriesforge", "serve")


class Rule(NamedTuple):
    why: str
    scope: tuple[str, ...]          # module prefixes the rule applies to ("a.b" covers a.b and a.b.*)
    forbid: tuple[str, ...]         # import prefixes, or one of the two tokens above
    exempt: tuple[str, ...] = ()    # module prefixes inside `scope` that the rule skips
    sole: bool = False              # the exempt modules must be exactly the importers of `forbid`


# THE TABLE. It mirrors design.md §2.3 ("Dependency direction"): changing the architecture means editing the
# design table and this one together, in the same change.
RULES: tuple[Rule, ...] = (
    Rule("contracts and shared layers sit below everything",
         scope=("seriesforge.nn", "seriesforge.processes", "seriesforge.protocols", "seriesforge.config",
                "seriesforge.errors"),
         forbid=("ray", "deepspeed", "seriesforge.families", "seriesforge.train", "seriesforge.registry",
                 "seriesforge.data.pipeline")),
    Rule("a family is a model, not a runner, and families never import each other",
         scope=("seriesforge.families",),
         forbid=("ray", "deepspeed", "seriesforge.train", "seriesforge.registry", "seriesforge.tune",
                 "seriesforge.eval.runner", OTHER_FAMILY)),
    Rule("loading and sampling a checkpoint needs no training stack",
         scope=("seriesforge.registry", "seriesforge.checkpoint", "seriesforge.generate", "seriesforge.outputs"),
         forbid=("ray", "deepspeed", "seriesforge.train", "seriesforge.tune")),
    Rule("data readers and metrics work without Ray; data.pipeline, data.embedding_pass, data.series_splits and "
         "data.series_training are the Ray Data layer",
         scope=("seriesforge.data", "seriesforge.eval.metrics", "seriesforge.eval.suites", "seriesforge.eval.report",
                "seriesforge.eval.plots"),
         exempt=("seriesforge.data.pipeline", "seriesforge.data.embedding_pass", "seriesforge.data.series_splits",
                 "seriesforge.data.series_training"),
         forbid=("ray", "seriesforge.families", "seriesforge.train",
                 "seriesforge.data.pipeline")),  # importing the pipeline would pull Ray in transitively
    Rule("the training loop, optimizers and strategies run in one plain process",
         scope=("seriesforge.train.loop", "seriesforge.train.optim", "seriesforge.train.ema",
                "seriesforge.train.strategy"),
         forbid=("ray",)),
    Rule("DeepSpeed is reached only through its strategy object",
         scope=EVERYTHING, exempt=("seriesforge.train.strategy.deepspeed",), forbid=("deepspeed",), sole=True),
    Rule("Ray Data is used by the data pipelines only (captions: pipeline, embedding_pass; UCR and windows: "
         "series_splits, series_training)",
         scope=("seriesforge",), forbid=("ray.data",),
         exempt=("seriesforge.data.pipeline", "seriesforge.data.embedding_pass", "seriesforge.data.series_splits",
                 "seriesforge.data.series_training",
                 "seriesforge.runtime")),  # runtime only configures Ray Data's DataContext (see configure_ray_data)
    Rule("no family special cases: trainer, launch, CLI and serve reach families through the registry",
         scope=EVERYTHING, exempt=("seriesforge.families",), forbid=(ANY_FAMILY,)),  # registry holds strings
    Rule("serving loads checkpoints; it never pulls in the training stack",
         scope=("serve", "seriesforge.serving", "seriesforge.client"),
         forbid=("seriesforge.train", "seriesforge.tune", "seriesforge.data", "deepspeed")),
    Rule("the HTTP client and the API's schemas, checks and batch grouping need neither Ray nor torch",
         scope=("seriesforge.client", "seriesforge.serving.api", "seriesforge.serving.config",
                "seriesforge.serving.sampling"),
         forbid=("ray", "torch", "seriesforge.generate", "seriesforge.registry", "seriesforge.serving.app")),
)


class Import(NamedTuple):
    module: str   # the importing module
    name: str     # the imported module (for `from a import b`: both a and a.b are recorded)
    file: Path
    line: int


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, base: Path, top: str) -> tuple[str, bool]:
    parts = [top, *path.relative_to(base).with_suffix("").parts]
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def imports_of(path: Path, module: str, is_pkg: bool) -> list[Import]:
    """Every import in the file, at any depth: top level, functions, `if TYPE_CHECKING:`, try/except."""
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb level-1 packages from this module's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]  # importlib.import_module("literal") is an import too
        found += [Import(module, n, path, node.lineno) for n in names if n]
    return found


def scan() -> dict[str, list[Import]]:
    """module name -> its imports, for every .py file under the scan roots that exist."""
    result: dict[str, list[Import]] = {}
    for base, top in SCAN_ROOTS:
        for path in sorted(base.rglob("*.py")) if base.is_dir() else ():
            name, is_pkg = module_name(path, base, top)
            result[name] = imports_of(path, name, is_pkg)
    return result


def family_of(module: str) -> str | None:
    """The family folder a module belongs to; shared modules beside the folders (families/base.py) are none."""
    parts = module.split(".")
    if len(parts) > 2 and parts[:2] == ["seriesforge", "families"]:
        return None if parts[2] in SHARED_FAMILY_MODULES else parts[2]
    return None


def hits(imp: Import, pattern: str) -> bool:
    if pattern in (ANY_FAMILY, OTHER_FAMILY):
        target = family_of(imp.name)
        return target is not None and (pattern == ANY_FAMILY or target != family_of(imp.module))
    return under(imp.name, pattern)


def in_scope(module: str, rule: Rule) -> bool:
    return any(under(module, s) for s in rule.scope) and not any(under(module, e) for e in rule.exempt)


def describe(imp: Import) -> str:
    return f"{imp.file.relative_to(ROOT)}:{imp.line}: {imp.module} imports {imp.name}"


@pytest.fixture(scope="module")
def modules() -> dict[str, list[Import]]:
    return scan()


@pytest.mark.parametrize("rule", RULES, ids=[r.why.split(";")[0][:50] for r in RULES])
def test_rule(rule: Rule, modules):
    """Each row of the table: no module in scope imports anything the row forbids."""
    bad = [f"{describe(i)}  (forbidden: {p})" for m, imps in modules.items() if in_scope(m, rule)
           for i in imps for p in rule.forbid if hits(i, p)]
    assert not bad, f"design.md §2.3 — {rule.why}:\n  " + "\n  ".join(sorted(set(bad)))


@pytest.mark.parametrize("rule", [r for r in RULES if r.sole], ids=lambda r: r.forbid[0])
def test_sole_importers(rule: Rule, modules):
    """`sole` rows: the exempt modules are exactly the importers, so the one allowed door is really used."""
    importers = {m for m, imps in modules.items() for i in imps for p in rule.forbid if hits(i, p)}
    assert importers == set(rule.exempt), (
        f"{rule.forbid} should be imported by exactly {sorted(rule.exempt)}, found {sorted(importers)}")


def test_scanner_is_not_vacuous(modules):
    """The guard must see real imports, lazy ones included, or every rule above would pass on nothing."""
    assert {"seriesforge.cli", "seriesforge.data.pipeline", "seriesforge.train.strategy.deepspeed"} <= set(modules)
    names = {m: {i.name for i in imps} for m, imps in modules.items()}
    assert "deepspeed" in names["seriesforge.train.strategy.deepspeed"]  # imported inside methods only
    assert "ray" in names["seriesforge.data.pipeline"] and "ray.data" in names["seriesforge.data.pipeline"]
    assert "seriesforge.train.launch" in names["seriesforge.cli"]  # `from seriesforge.train import launch`, lazy


def test_scanner_resolves_relative_and_dynamic_imports(tmp_path):
    """Relative, lazy and importlib imports are resolved to absolute names with the right line numbers."""
    pkg = tmp_path / "families" / "a"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import model\n")
    (pkg / "family.py").write_text(
        "import importlib\n"
        "def f():\n    from ..b import model\n    from .config import X\n"
        "    return importlib.import_module('ray.data')\n")
    mods = {}
    for path in sorted(pkg.rglob("*.py")):
        name, is_pkg = module_name(path, tmp_path, "seriesforge")
        mods[name] = {(i.name, i.line) for i in imports_of(path, name, is_pkg)}
    assert ("seriesforge.families.a.model", 1) in mods["seriesforge.families.a"]
    fam = mods["seriesforge.families.a.family"]
    assert {("seriesforge.families.b.model", 3), ("seriesforge.families.a.config", 4), ("ray.data", 5)} <= fam
    other = Import("seriesforge.families.a.family", "seriesforge.families.b.model", pkg / "family.py", 3)
    assert hits(other, OTHER_FAMILY) and not hits(other._replace(name="seriesforge.families.a.model"), OTHER_FAMILY)
