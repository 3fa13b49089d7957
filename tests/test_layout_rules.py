"""The package's layering, read from the source (ast): every ``import`` of every module under src/lavish.

* no import cycle between lavish modules (imports inside functions count: they only postpone a cycle);
* ``lavish.media``, ``lavish.data``, ``lavish.models`` and ``lavish.engine`` import nothing of ``lavish.tasks``;
  each layer imports only the layers below it (media -> data -> models -> engine -> tasks -> api / bench -> cli);
* nothing outside ``lavish/tasks/<name>/`` names a task: no import of a task's modules, no identifier built on a
  task's name (``AveModel``, ``prepare_avvp``), no string that is a task's name, except the adapter presets named
  after the paper's rows (``ave``, ``avs``, ``avqa``, ``avqa_paper``) and the exceptions listed below with reasons.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "lavish"

#: strings that may appear anywhere: the adapter presets named after the paper's rows (docs/adapters.md)
PRESET_NAMES = {"ave", "avs", "avqa", "avqa_paper"}
#: task names and words for their datasets, as strings or inside identifiers
TASK_WORDS = ("ave", "avs", "avqa", "avvp", "llp", "classify", "vggsound", "audioset")
#: (module, name) pairs allowed outside tasks/, each with its reason
ALLOWED = {
    # the generic cache dataset's name before the move (tests and users' scripts import it)
    ("data/cache.py", "AveCacheDataset"),
    # the audio front-ends carry the authors' dataset statistics; their names are written into every prepared
    # cache's manifest and compared on load, so they keep their names
    ("media/audio.py", "ave_vit"), ("media/audio.py", "_AVE_MEAN"), ("media/audio.py", "_AVE_STD"),
}
#: layer of each top-level part; a module may import its own layer and lower ones
LAYERS = {"errors": 0, "fileio": 0, "quiet": 0, "media": 1, "data": 2, "models": 3, "engine": 4, "tasks": 5, "api": 6,
          "benchmarking": 6, "serve": 7, "cli": 7, "__init__": 8, "__main__": 8}

_WORD = re.compile(r"(?:^|_)(" + "|".join(TASK_WORDS) + r")(?:_|$)|^(" +
                   "|".join(w.capitalize() for w in TASK_WORDS) + r")[A-Z]|[a-z](" +
                   "|".join(w.capitalize() for w in TASK_WORDS) + r")(?:[A-Z]|$)")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """Every lavish module ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] == "lavish" and m in MODULES}


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def test_the_walk_sees_the_package():
    assert len(MODULES) > 60
    assert _WORD.search("AveModel") and _WORD.search("prepare_avvp") and _WORD.search("read_llp")
    assert not _WORD.search("average_rate") and not _WORD.search("save_adapter")
    assert "lavish.engine.registry" in GRAPH["lavish.engine.train"]
    assert "lavish.tasks.avvp.layout" in GRAPH["lavish.tasks.avvp.prepare"]


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__init__"]


def test_lower_layers_import_no_task_and_nothing_above_them():
    wrong = []
    for name, deps in GRAPH.items():
        for dep in deps:
            if name.split(".")[1] in ("media", "data", "models", "engine") and dep.startswith("lavish.tasks"):
                wrong.append(f"{name} imports {dep}")
            elif _layer(dep) > _layer(name) and dep != "lavish":
                wrong.append(f"{name} imports {dep}, a higher layer")
    assert not wrong, "\n".join(sorted(wrong))


def _task_of(path: Path) -> str | None:
    rel = path.relative_to(SRC).parts
    return rel[1] if rel[0] == "tasks" and len(rel) > 2 else None


def test_only_a_task_folder_names_its_task():
    wrong = []
    for name, path in MODULES.items():
        own = _task_of(path)
        rel = str(path.relative_to(SRC))
        for dep in GRAPH[name]:
            parts = dep.split(".")
            if len(parts) > 2 and parts[1] == "tasks" and parts[2] != own:
                wrong.append(f"{rel} imports {dep}")
        if own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.lower() in TASK_WORDS or text in ("ave_vit",):
                    if text not in PRESET_NAMES and (rel, text) not in ALLOWED:
                        wrong.append(f"{rel}:{node.lineno} the string {text!r}")
                continue
            ident = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                     else node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                     node.arg if isinstance(node, ast.arg) else None)
            if ident and _WORD.search(ident) and (rel, ident) not in ALLOWED:
                wrong.append(f"{rel}:{node.lineno} the name {ident}")
    assert not wrong, "\n".join(sorted(set(wrong)))
