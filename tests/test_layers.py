"""The packages of src/mnistlab import only downward (docs/ARCHITECTURE.md draws the layers).

Every import of src/ is read, those inside functions too: a module may import from its own
layer and the layers below, never from one above; it never imports another module's private
name; and an import inside a function is there only to put off a heavy third-party library
(torch, scikit-learn, ...) that the target module imports, never to hide a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Lowest first. The package's own __init__ (its version, lazy public names) sits with core.
LAYERS = ["core", "data", "engine", "models", "sections", "study", "report", "serve", "cli"]
# Worth putting off: each costs a second or more of start-up (`mnistlab --help` stays fast).
HEAVY = {"torch", "sklearn", "matplotlib", "distributed", "dask", "umap", "skops", "scipy",
         "fastapi", "uvicorn", "PIL", "jinja2", "pandas", "numba", "pynndescent", "mlxtend"}


@dataclass
class Import:
    source: str  # the importing module, mnistlab.x.y
    target: str  # the imported module
    names: list[str]
    deferred: bool  # inside a function
    line: int


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # mnistlab itself: __version__
    return "cli" if parts[1] in ("cli", "__main__") else parts[1]


def internal_imports(path: Path, root: Path = SRC) -> list[Import]:
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    deferred = {id(node) for fn in ast.walk(tree)
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "mnistlab":
                continue
            names = [a.name for a in node.names]
            # "from . import classic": the submodules are what is imported
            folder = root / target.replace(".", "/")
            if all((folder / n).with_suffix(".py").exists() or (folder / n).is_dir()
                   for n in names):
                found += [Import(source, f"{target}.{n}", [], id(node) in deferred,
                                 node.lineno) for n in names]
            else:
                found.append(Import(source, target, names, id(node) in deferred, node.lineno))
        elif isinstance(node, ast.Import):
            found += [Import(source, a.name, [], id(node) in deferred, node.lineno)
                      for a in node.names if a.name.split(".")[0] == "mnistlab"]
    return found


def module_path(module: str) -> Path:
    base = SRC / module.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def top_level_libraries(module: str) -> set[str]:
    """The third-party packages ``module`` imports when it is imported (its top level)."""
    tree = ast.parse(module_path(module).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def every_import() -> list[Import]:
    return [i for path in sorted(SRC.rglob("*.py")) for i in internal_imports(path)]


def upward(imports: list[Import]) -> list[str]:
    return [f"{i.source}:{i.line} imports {i.target} ({layer(i.source)} -> {layer(i.target)})"
            for i in imports if LAYERS.index(layer(i.target)) > LAYERS.index(layer(i.source))]


def test_every_package_is_a_layer():
    packages = {p.name for p in (SRC / "mnistlab").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"cli"}


def test_no_module_imports_from_a_layer_above_it():
    imports = every_import()
    assert len(imports) > 100  # the parse found them
    assert upward(imports) == []


def test_the_check_finds_an_upward_import(tmp_path):
    """The check itself: one upward import put back into a section (inside a function, as the
    old code hid them) is caught."""
    module = SRC / "mnistlab" / "sections" / "classic.py"
    planted = tmp_path / "mnistlab" / "sections" / "classic.py"
    planted.parent.mkdir(parents=True)
    text = module.read_text() + "\n\ndef draw():\n    from ..report import build_report\n"
    planted.write_text(text)
    assert upward(internal_imports(module)) == []
    assert upward(internal_imports(planted, root=tmp_path)) == [
        f"mnistlab.sections.classic:{text.count(chr(10))} imports mnistlab.report "
        "(sections -> report)"]


def test_no_private_name_is_imported_from_another_module():
    private = [f"{i.source}:{i.line} imports {name} from {i.target}" for i in every_import()
               for name in i.names if name.startswith("_") and name != "__version__"]
    assert private == []


@pytest.mark.parametrize("imp", [i for i in every_import() if i.deferred
                                 and layer(i.source) != "cli"],
                         ids=lambda i: f"{i.source}:{i.line}")
def test_an_import_inside_a_function_puts_off_a_heavy_library(imp):
    """The CLI defers every command's imports (a fast --help); elsewhere an import inside a
    function must buy start-up time."""
    assert top_level_libraries(imp.target) & HEAVY, \
        f"{imp.source}:{imp.line}: {imp.target} imports nothing heavy; import it at the top"
