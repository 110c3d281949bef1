"""The Dagster UI as a user meets it, in headless Chromium: `mlops dev` on a fresh home, the pipeline launched from
the launchpad with a catalogue dataset chosen by name, and the trained model's and the evaluation's metrics, tables
and pictures read off their asset pages without a click. Screenshots go to a temporary folder; with
MLOPS_UPDATE_SCREENSHOTS=1 (`make screenshots`) they replace the README's, in docs/screenshots/.

Chromium comes from the system's packages (`scripts/ensure_browser.sh`, run by `make test`); where none could be
installed the test is skipped with that reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_assets import settings
from mlops_assets_tests.dev_server import MLOPS, dev_environment, graphql, location_loaded, start_mlops_dev

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
README_SCREENSHOTS = settings.PROJECT_ROOT / "docs" / "screenshots"
DEADLINE_S = 420
# Few epochs: the test is about what the UI shows, not the model (the gate's floor still holds on these digits).
LAUNCH_CONFIG = """ops:
  raw_images:
    config:
      dataset: digits
  trained_model:
    config:
      epochs: 8
"""
RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName } }"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: docs/screenshots/ with MLOPS_UPDATE_SCREENSHOTS=1, else a temporary folder (a test
    run leaves the checkout as it found it)."""
    if os.environ.get("MLOPS_UPDATE_SCREENSHOTS") == "1":
        return README_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, digits_subset: Path) -> Iterator[str]:
    """`mlops dev` on a free loopback port and a fresh home whose catalogue names the digits subset `digits`."""
    home = tmp_path_factory.mktemp("ui_home")
    added = subprocess.run(
        [MLOPS, "datasets", "add", "digits", str(digits_subset)],
        env=dev_environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    dev = start_mlops_dev(home)
    try:
        dev.wait_for("the code location to load", lambda: location_loaded(dev.url), DEADLINE_S, 1)
        yield dev.url
        # `dg dev` is Dagster's current command: no deprecation warning for `dagster dev` in what the user sees.
        assert "Use 'dg dev' instead" not in dev.output()
        assert dev.stop() == 0, dev.output()[-3000:]
        assert dev.survivors() == set()
    finally:
        dev.kill()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"no browser: {CHROMIUM} is missing and scripts/ensure_browser.sh could not install Chromium here "
            "(it needs apt-get and root); install the chromium package to run the UI test"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(page, url: str, text: str) -> None:
    """Go to `url` and wait until `text` shows."""
    page.goto(url)
    page.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=120_000)


def _shot(page, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _visible(page, text: str) -> bool:
    return page.get_by_text(text, exact=True).first.is_visible()


def _picture_shown(page, alt: str) -> bool:
    """The picture is on the page, visible and decodes to pixels (not a link to open it).

    Waits for both: the UI renders an asset's metadata after its text, and a browser decodes an image after it is
    inserted, so an immediate look can find the picture absent or not yet decoded. `decode()` resolves once the image
    is decoded and rejects when it cannot be (a broken picture); a picture that does neither within 60 s is not shown.
    """
    picture = page.get_by_alt_text(alt).first
    picture.wait_for(state="visible", timeout=60_000)
    return picture.evaluate(
        """image => Promise.race([
            image.decode().then(() => image.naturalWidth > 0, () => false),
            new Promise(settle => setTimeout(() => settle(false), 60000)),
        ])"""
    )


def test_pipeline_runs_from_the_ui_and_its_metrics_tables_and_pictures_show_without_a_click(
    browser, ui: str, screenshots: Path
) -> None:
    # Tall enough that an asset page's metadata shows whole (the UI scrolls inside the page, not the page itself).
    page = browser.new_page(viewport={"width": 1920, "height": 1100})
    # A fresh instance greets the first visitor with a "Join the Dagster community" dialog, at a moment of its own
    # choosing; the dialog's Skip button sends this mutation.
    assert graphql(ui, "mutation { setNuxSeen }") == {"setNuxSeen": True}

    # The lineage graph: one box per group, each named; expanded (the graph's menu), every asset in its group.
    _open(page, f"{ui}/asset-groups", "model")
    for group in ("data", "model", "deployment", "monitoring"):
        assert _visible(page, group), group
    _shot(page, screenshots, "graph")
    page.mouse.click(1000, 180, button="right")  # empty graph canvas, above the groups
    page.locator("text=Expand all groups >> visible=true").first.click()
    page.get_by_text("trained_model", exact=True).first.wait_for(state="visible")
    _shot(page, screenshots, "graph_expanded")

    # Declarative automation is on: the job's header says so.
    _open(page, f"{ui}/locations/mlops_assets/jobs/training_pipeline_job", "Auto-materialize on")

    # The launchpad: every field described; the dataset chosen by name from the catalogue's enumeration.
    _open(page, f"{ui}/locations/mlops_assets/jobs/training_pipeline_job/playground", "Launch Run")
    page.wait_for_selector(".CodeMirror")
    page.evaluate("config => document.querySelector('.CodeMirror').CodeMirror.setValue(config)", LAUNCH_CONFIG)
    page.get_by_text("No errors", exact=True).wait_for(state="visible")
    _shot(page, screenshots, "launchpad")
    page.get_by_role("button", name="Launch Run").click()

    def finished_run() -> dict | None:
        runs = (graphql(ui, RUNS_QUERY).get("runsOrError") or {}).get("results") or []
        ours = [run for run in runs if run["jobName"] == "training_pipeline_job"]
        return next((run for run in ours if run["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None)

    deadline = time.monotonic() + DEADLINE_S
    run = None
    while run is None:
        assert time.monotonic() < deadline, "the run launched from the UI did not finish"
        time.sleep(2)
        run = finished_run()
    page.goto(f"{ui}/runs/{run['runId']}")
    page.get_by_text("Finished execution of run", exact=False).first.wait_for(state="visible", timeout=60_000)
    _shot(page, screenshots, "run")
    assert run["status"] == "SUCCESS", run
    page.set_viewport_size({"width": 1920, "height": 2300})

    # The trained model: metrics first, the epochs as a table, the curves as a picture, all without a click.
    _open(page, f"{ui}/assets/trained_model", "final_val_accuracy")
    for text in ("final_val_accuracy", "best_val_accuracy", "epochs", "val_accuracy", "train_loss", "training_curves"):
        assert _visible(page, text), text
    assert _picture_shown(page, "training curves")
    _shot(page, screenshots, "trained_model")

    # The evaluation: accuracy and per-class F1 as numbers, the per-class table and the confusion matrix.
    _open(page, f"{ui}/assets/model_evaluation", "macro_f1")
    for text in ("accuracy", "macro_f1", "f1_0", "f1_9", "per_class", "precision", "recall", "confusion_matrix_counts"):
        assert _visible(page, text), text
    assert _picture_shown(page, "confusion matrix")
    _shot(page, screenshots, "model_evaluation")

    # Serving, deployment and monitoring: each asset's page as a user opens it.
    nodes = graphql(ui, ASSETS_QUERY)["assetNodes"]
    later = [node["assetKey"]["path"][-1] for node in nodes if node["groupName"] in ("deployment", "monitoring")]
    assert {"bento", "model_promotion"} <= set(later), later
    for asset in sorted(later):
        _open(page, f"{ui}/assets/{asset}", asset)
        page.get_by_text("Definition", exact=True).first.wait_for(state="visible")
        _shot(page, screenshots, asset)
    page.close()
