"""The request-path benchmark: its committed report renders from its committed runs, and every layer it times
exists in this tree (a renamed function would otherwise drop out of the table silently)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _driver():
    spec = importlib.util.spec_from_file_location("request_path_driver", ROOT / "benchmarks" / "request_path_driver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_report_is_rendered_from_the_committed_runs() -> None:
    from benchmarks.profile_request_path import markdown

    report = json.loads((RESULTS / "request_path.json").read_text())
    assert markdown(report) == (RESULTS / "request_path.md").read_text()
    for servers in report["models"].values():
        for name, runs in servers.items():
            assert len(runs["rounds_us"]) == report["rounds"], name
            assert len(runs["timed_layers_own_us"]) == report["timed_rounds"], name


@pytest.mark.parametrize("table", ["SERVICE_LAYERS", "NAIVE_LAYERS"])
def test_every_timed_layer_exists_in_this_tree_and_has_a_timed_parent(table: str, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setitem(sys.modules, "bento.service", _service_stand_in())
    driver = _driver()
    layers = getattr(driver, table)
    names = [layer for layer, _, _ in layers]
    for layer, parent, target in layers:
        assert driver._resolve(target) is not None, (layer, target)
        assert parent is None or parent in names, (layer, parent)


def _service_stand_in():
    """bento.service cannot be imported outside a BentoML server (its arguments come from the server); the layers
    that name it are checked against its source instead."""
    source = (ROOT / "bento" / "service.py").read_text()
    assert "    async def _classify(" in source and "    async def _decode_all(" in source

    class ImageClassifier:
        class inner:  # noqa: N801 - BentoML's attribute name for the decorated class
            async def _classify(self) -> None: ...
            async def _decode_all(self) -> None: ...

    module = type(sys)("bento.service")
    module.ImageClassifier = ImageClassifier
    return module
