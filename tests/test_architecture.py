"""The package's layers only look down (docs/design.md, "Layers that only look down"): parsed from the source with ``ast``, every
import of a module of the package is checked against the layer order, and the import graph has
no cycle. Function-level imports count: a lazy import is still a dependency."""

import ast
import pathlib
from typing import Dict, List, Set

import pytest

PACKAGE = "iou_aware"
# Bottom to top; each layer may import the layers below it and itself, never one above it, and
# the packages of one layer never import each other. ``_C``, the compiled kernel, belongs to ``layers``.
LAYER_ORDER = [
    ("utils", "config"),
    ("model_zoo",),
    ("layers",),
    ("structures",),
    ("modeling", "data"),
    ("evaluation",),
    ("engine",),
    ("deployment",),
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYER_ORDER) for name in names}


def _package_root(repo_root) -> pathlib.Path:
    return pathlib.Path(repo_root) / "projects" / PACKAGE


def _module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: pathlib.Path) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports (relative imports resolved; ``from X import y``
    counts as an import of ``X.y`` when that is a module, else of ``X``)."""
    modules = {_module_name(root, p): p for p in root.rglob("*.py")}
    known = set(modules) | {f"{PACKAGE}._C"}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
            found.update(t for t in targets if t == PACKAGE or t.startswith(PACKAGE + "."))
        graph[name] = found - {name}
    return graph


def _layer(module: str):
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's own __init__ (the top)
    return "layers" if parts[1] == "_C" else parts[1]


def test_every_top_level_package_has_a_layer(repo_root):
    root = _package_root(repo_root)
    packages = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    packages |= {"layers" for p in root.glob("_C*.so")}
    assert packages - set(LAYER_OF) == set()


def test_no_module_imports_a_layer_above_it_or_beside_it(repo_root):
    wrong = []
    for module, imported in _imports(_package_root(repo_root)).items():
        layer = _layer(module)
        if layer is None:
            continue
        for target in imported:
            other = _layer(target)
            if other is None:
                wrong.append(f"{module} imports the package root {target}")
            elif other != layer and LAYER_OF[other] >= LAYER_OF[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycle(repo_root):
    graph = _imports(_package_root(repo_root))
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..modeling import LSNet\n", "iou_aware.data.mappers (data) imports iou_aware.modeling (modeling)"),
        (
            "from ..engine.trainer import Trainer\n",
            "iou_aware.data.mappers (data) imports iou_aware.engine.trainer (engine)",
        ),
    ],
)
def test_the_checks_catch_a_wrong_import(tmp_path, repo_root, source, expected):
    """The checks fail on a copy of the package with one upward import added."""
    import shutil

    copy = tmp_path / "projects" / PACKAGE
    shutil.copytree(_package_root(repo_root), copy, ignore=shutil.ignore_patterns("*.so", "__pycache__", "configs"))
    mapper = copy / "data" / "mappers.py"
    mapper.write_text(mapper.read_text() + "\n\ndef _late():\n    " + source.replace("\n", "\n    "))
    with pytest.raises(AssertionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        test_no_module_imports_a_layer_above_it_or_beside_it(tmp_path)


def test_a_cycle_is_found(tmp_path, repo_root):
    import shutil

    copy = tmp_path / "projects" / PACKAGE
    shutil.copytree(_package_root(repo_root), copy, ignore=shutil.ignore_patterns("*.so", "__pycache__", "configs"))
    config = copy / "config.py"
    config.write_text(config.read_text() + "\n\ndef _late():\n    from .utils import choices\n")
    choices = copy / "utils" / "choices.py"
    choices.write_text(choices.read_text() + "\n\ndef _late():\n    from ..config import add_iou_aware_config\n")
    with pytest.raises(AssertionError, match="cycle|->"):
        test_the_import_graph_has_no_cycle(tmp_path)
