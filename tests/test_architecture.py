"""The package's layout is its architecture: imports run one way, data -> metrics -> models -> priors -> anomaly ->
training -> export -> commands, with no cycles, and no library module imports a command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_vqvae"
COMMANDS = {"keras_vqvae.train", "keras_vqvae.predict", "keras_vqvae.export", "keras_vqvae.detect",
            "keras_vqvae.__main__", "keras_vqvae.data.__main__", "keras_vqvae.cli"}
LAYERS = [  # each layer may import its own and the layers above it only
    {"keras_vqvae.startup", "keras_vqvae.errors", "keras_vqvae.settings", "keras_vqvae.batching", "keras_vqvae.plots"},
    {"keras_vqvae.data"},
    {"keras_vqvae.metrics"},
    {"keras_vqvae.models"},
    {"keras_vqvae.priors"},
    {"keras_vqvae.calibration", "keras_vqvae.anomaly", "keras_vqvae.anomaly_baselines",
     "keras_vqvae.anomaly_masks"},
    {"keras_vqvae.training"},
    {"keras_vqvae.savedmodel"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The keras_vqvae modules `path` imports (`from keras_vqvae.data import synthetic` imports the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("keras_vqvae")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_vqvae"):
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in NAMES else node.module
                      for alias in node.names}
    return found


MODULES = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return index
    return None


def test_every_module_has_its_place_in_the_pipeline():
    unplaced = [m for m in MODULES if m not in COMMANDS and m != "keras_vqvae" and layer_of(m) is None]
    assert not unplaced, f"modules in no layer: {unplaced}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in COMMANDS and m != "keras_vqvae"))
def test_a_library_module_imports_only_its_own_layer_and_those_before_it_never_a_command(module):
    for imported in MODULES[module]:
        assert imported not in COMMANDS, f"{module} imports the command module {imported}"
        if imported != "keras_vqvae":
            assert layer_of(imported) <= layer_of(module), f"{module} imports {imported}, a later layer"


def test_imports_between_modules_have_no_cycle():
    graph = {module: {i for i in imports if i in MODULES} for module, imports in MODULES.items()}
    visiting, done = set(), set()

    def visit(module, path):
        assert module not in visiting, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        visiting.add(module)
        for imported in graph[module]:
            visit(imported, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


FUNCTION_LINES, MODULE_LINES = 60, 300
LONG_MODULE_REASON = re.compile(r"^Longer than 300 lines because \S", re.MULTILINE)


def test_no_function_is_longer_than_60_lines_and_no_module_than_300_unless_its_docstring_says_why():
    """A reader takes in a function at a glance and a module at a sitting; a module that must be longer says why in
    its docstring, on a line of its own starting "Longer than 300 lines because"."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        name = path.relative_to(PACKAGE.parent).as_posix()
        lines = len(text.splitlines())
        if lines > MODULE_LINES and not LONG_MODULE_REASON.search(ast.get_docstring(tree) or ""):
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
                if node.end_lineno - first + 1 > FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}(): {node.end_lineno - first + 1} lines")
    assert not too_long, "too long: " + "; ".join(too_long)


BENCHMARKS = sorted((PACKAGE.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", [path for path in BENCHMARKS if path.name != "hardware.py"], ids=lambda p: p.name)
def test_a_benchmark_imports_the_repositorys_package_not_an_installed_copy(script):
    """`hardware` puts the repository first on the path; it must come before any keras_vqvae import, else a
    benchmark run as `python3 benchmarks/NAME.py` measures whatever copy pip installed last."""
    imports = [node for node in ast.parse(script.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name if isinstance(node, ast.Import) else node.module or "" for node in imports
             for alias in node.names]
    ours = [i for i, name in enumerate(names) if name.split(".")[0] == "keras_vqvae"]
    assert "hardware" in names and all(names.index("hardware") < i for i in ours)
