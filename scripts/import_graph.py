"""The project's import graph: which module imports which, counting imports inside functions too
(a function-level import hides a circle; it does not remove it).

    .venv/bin/python scripts/import_graph.py                 # prints the layers and any circle
    .venv/bin/python scripts/import_graph.py --png docs/architecture.png

The picture draws one box per annotator module (its sub-packages and the other packages as one box
each), in layers: everything a module imports stands above it, so every arrow points up and a
circle would show as an arrow pointing down (the check itself reads every module; circles are printed).
tests/annotator/test_import_graph.py fails when a circle appears.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "frontend", "annotator", "lcz_model", "experiments", "fixtures")
# drawn as one box each: the annotator's sub-packages, and the other packages whole (their own
# modules are checked for circles all the same)
GROUPS = ("annotator.api", "annotator.management", "annotator.export", "annotator.ingest", "config", "frontend",
          "lcz_model", "experiments", "fixtures")


def module_paths(packages=PACKAGES) -> dict[str, Path]:
    paths = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return paths


def import_graph(packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere in its body (migrations aside)."""
    paths = module_paths(packages)
    graph = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:  # relative: from the module's package, one level up per extra dot
                    base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]).strip(".")
                # `from pkg import module` imports the module; `from pkg import name` the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # the module a name belongs to
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def grouped(graph: dict[str, set[str]], groups=GROUPS) -> dict[str, set[str]]:
    """The same graph with each group's modules merged into one node (edges inside a group dropped)."""
    def box(name):
        return next((g for g in groups if name == g or name.startswith(g + ".")), name)

    out: dict[str, set[str]] = {}
    for name, edges in graph.items():
        out.setdefault(box(name), set()).update(box(e) for e in edges)
    return {name: edges - {name} for name, edges in out.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Layer of each module: 0 for modules importing nothing of ours, else 1 + its deepest import
    (modules in a circle share the circle's layer)."""
    depth: dict[str, int] = {}

    def visit(v, seen=()):
        if v in depth:
            return depth[v]
        if v in seen:
            return 0
        depth_v = 1 + max((visit(w, (*seen, v)) for w in graph.get(v, ())), default=-1)
        depth[v] = depth_v
        return depth_v

    for v in graph:
        visit(v)
    return depth


def draw(graph: dict[str, set[str]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = {t for edges in graph.values() for t in edges}
    graph = {n: e for n, e in graph.items() if e or n in used}  # a module nothing touches says nothing
    layer = layers(graph)
    colours = {"config": "#8250df", "frontend": "#bf8700", "annotator": "#1f6feb", "lcz_model": "#1a7f37",
               "experiments": "#cf222e", "fixtures": "#6e7781"}
    rows: dict[int, list[str]] = {}
    for name in sorted(graph, key=lambda n: (n.split(".")[0] != "annotator", n)):
        rows.setdefault(layer[name], []).append(name)
    width = max(len(r) for r in rows.values())
    pos = {name: ((i + 0.5) * width / len(row), y) for y, row in rows.items() for i, name in enumerate(row)}
    fig, ax = plt.subplots(figsize=(2.0 * width + 1, 0.9 * len(rows) + 1.4))
    for name, edges in graph.items():
        for target in edges:
            (x0, y0), (x1, y1) = pos[name], pos[target]
            down = y1 >= y0  # drawn top-down: only a circle can point down (or sideways)
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                        arrowprops=dict(arrowstyle="-|>", lw=0.7, alpha=0.9 if down else 0.35,
                                        color="#cf222e" if down else "#57606a", shrinkA=0, shrinkB=0))
    for name, (x, y) in pos.items():
        package = name.split(".")[0]
        label = name.replace("annotator.", "") if package == "annotator" and name != "annotator" else name
        ax.text(x, y, label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.35", fc="white", ec=colours.get(package, "#57606a"), lw=1.5))
    for package, colour in colours.items():
        ax.plot([], [], "s", color=colour, label=package)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.06), ncol=len(colours), frameon=False, fontsize=9)
    ax.set_xlim(0, width)
    ax.set_ylim(-0.6, max(rows) + 0.6)
    ax.invert_yaxis()
    ax.axis("off")
    found = cycles(graph)
    ax.set_title("Imports point up: everything a module imports stands above it (annotator's modules by "
                 "name, other packages whole) — " + ("no import circle" if not found else
                                                     f"{len(found)} import circle(s), in red"), fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--png", type=Path, help="draw the picture into this file")
    args = parser.parse_args(argv)
    full = import_graph()
    graph = grouped(full)
    found = cycles(full)
    for depth, names in sorted({d: sorted(n for n in graph if layers(graph)[n] == d)
                                for d in set(layers(graph).values())}.items()):
        print(f"layer {depth}: {', '.join(names)}")
    edges = sum(len(e) for e in full.values())
    print(f"{len(full)} modules, {edges} imports: " + ("no import circle" if not found else f"circles: {found}"))
    if args.png:
        draw(graph, args.png)
        print(f"wrote {args.png}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
