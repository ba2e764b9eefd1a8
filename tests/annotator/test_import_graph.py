"""The project's modules import one another without a circle, counting imports inside functions
too (a function-level import hides a circle; it does not remove it). The graph and the picture
in docs/architecture.png come from scripts/import_graph.py."""
from __future__ import annotations

from scripts.import_graph import cycles, grouped, import_graph, layers


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "annotator.curation" in graph["annotator.services"]  # imported inside _update_block_status
    assert "annotator.prediction_jobs" in graph["annotator.tasks"]
    assert "lcz_model.checkpoints" in graph["lcz_model.encoders"]  # inside save_encoder_weights
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_anywhere_in_the_project():
    assert cycles(import_graph()) == []


def test_layers_put_every_module_above_what_it_imports():
    graph = grouped(import_graph())
    depth = layers(graph)
    assert all(depth[name] > depth[target] for name, edges in graph.items() for target in edges)
    assert depth["config"] > depth["frontend"] > depth["annotator.services"] > depth["annotator.selectors"]
