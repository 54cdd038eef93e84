"""The package's static import graph: no cycle, every arrow pointing down the layers, and no import
hidden inside a function except for optional heavy extras."""
import ast
from pathlib import Path

import pytest

from helpers.core.paths import PROJECT_ROOT

HELPERS = PROJECT_ROOT / "helpers"
# Bottom to top. A module may import from a lower layer, or from its own package.
LAYERS = {"core": 0, "data": 1, "model": 2, "metrics": 3, "plots": 3, "curation": 4, "review": 5, "run": 5, "": 6}
MAY_IMPORT_ONLY = {"plots": {"core", "data"}}  # figures take plain data
OPTIONAL_EXTRAS = ("umap",)  # imported where used, so the rest works without it


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """`helpers.data.sets` -> `data`; `helpers.metrics` -> `metrics`; `helpers` -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[str, ast.AST]]:
    """(absolute module imported, node) for every import in a file, function-level ones included."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(n if (HELPERS.parent / (n.replace(".", "/") + ".py")).exists()
                       or (HELPERS.parent / n.replace(".", "/")).is_dir() else target, node) for n in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node) for a in node.names]
    return found


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in HELPERS.rglob("*.py"):
        module = module_name(path)
        edges[module] = {t for t, _ in imports(path) if t.startswith("helpers.") or t == "helpers"} - {module}
    return edges


def test_every_import_points_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        if module == "helpers.__main__":
            continue
        own = package_of(module)
        for target in targets:
            other = package_of(target)
            if other == own or (module == "helpers" and target.startswith("helpers.")):
                continue
            allowed = MAY_IMPORT_ONLY.get(own)
            if (allowed is not None and other not in allowed) or LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if target.startswith(module + "."):  # a package's __init__ naming its own modules is not a cycle
                continue
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(target):] + [target]))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_no_imports_inside_functions_but_optional_extras():
    hidden = []
    for path in HELPERS.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        names = [node.module or "."] if not node.level else ["." + (node.module or "")]
                    else:
                        continue
                    hidden += [f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {n}" for n in names
                               if not n.startswith(OPTIONAL_EXTRAS)]
    assert not hidden, "function-level imports:\n" + "\n".join(hidden)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The layer test would fail on a module of `data` importing from `run`."""
    fake = tmp_path / "helpers"
    (fake / "data").mkdir(parents=True)
    (fake / "run").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "run" / "__init__.py").write_text("")
    (fake / "run" / "steps.py").write_text("from ..data import sets\n")
    (fake / "data" / "sets.py").write_text("from ..run.steps import x\n")
    monkeypatch.setitem(globals(), "HELPERS", fake)
    monkeypatch.setitem(globals(), "PROJECT_ROOT", tmp_path)
    with pytest.raises(AssertionError, match="helpers.data.sets -> helpers.run.steps"):
        test_every_import_points_down_the_layers()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_there_is_no_import_cycle()


# ---------------------------------------------------------------- the shape of the code

MAX_LINES, MAX_POSITIONAL = 60, 6


def shape_problems(root: Path) -> list[str]:
    """Functions longer than MAX_LINES, public ones taking more than MAX_POSITIONAL positional
    parameters (self and cls aside), and top-level function names defined in two modules."""
    problems, defined = [], {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(root.parent)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name in defined:
                    problems.append(f"{node.name} is defined in {defined[node.name]} and {where}")
                defined[node.name] = where
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                problems.append(f"{where}:{node.lineno} {node.name} has {lines} lines")
            positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(positional) > MAX_POSITIONAL and not node.name.startswith("_"):
                problems.append(f"{where}:{node.lineno} {node.name} takes {len(positional)} positional parameters")
    return problems


def test_functions_are_short_take_few_positional_parameters_and_have_one_home():
    problems = shape_problems(HELPERS)
    assert not problems, "\n".join(problems)


def test_the_shape_check_sees_each_problem(tmp_path):
    fake = tmp_path / "helpers"
    fake.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (fake / "a.py").write_text(f"def long():\n{body}\n\n\ndef many(a, b, c, d, e, f, g):\n    pass\n")
    (fake / "b.py").write_text("def many(*, a):\n    pass\n")
    problems = "\n".join(shape_problems(fake))
    assert "long has 61 lines" in problems
    assert "many takes 7 positional parameters" in problems
    assert "many is defined in helpers/a.py and helpers/b.py" in problems


def test_the_layout_table_names_every_module():
    layout = (PROJECT_ROOT / "docs" / "layout.md").read_text()
    modules = {p.stem for p in HELPERS.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    missing = sorted(m for m in modules if f"`{m}`" not in layout)
    assert not missing, f"modules docs/layout.md's table leaves out: {missing}"
