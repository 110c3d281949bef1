"""Embedding drift: the CNN plug-in's penultimate-layer embeddings, compacted as the service logs them, graded by
Evidently's domain classifier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlops_assets.lib.data.preprocessing import ImageSpec, normalize
from mlops_assets.lib.models.plugins.cnn import SmallCNNPlugin
from mlops_assets.lib.models.plugins.softmax import SoftmaxRegressionPlugin
from mlops_assets.lib.monitoring.baseline import EMBEDDINGS_FILE, INPUTS_FILE, PREDICTIONS_FILE, MonitoringBaseline
from mlops_assets.lib.monitoring.drift import SIGNALS as DRIFT_SIGNALS
from mlops_assets.lib.monitoring.embedding_projection import _projection, compact_embedding
from mlops_assets.lib.monitoring.embeddings import EMBEDDING, EMBEDDING_METHOD, embedding_drift
from mlops_assets.lib.monitoring.logs import read_day
from mlops_assets.lib.monitoring.monitor import MonitoredVersion, assess_day
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA, NOT_MONITORED, SEVERE_DRIFT
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore
from mlops_assets_tests.monitoring_fixtures import baseline_frames, records_like, write_log

SETTINGS = MonitoringSettings()
MAX_DIMS = 32
DAY = dt.date(2026, 11, 3)
TAG = "image-classifier:cnn"


def _images(count: int, seed: int) -> np.ndarray:
    """Dark images [N, 1, 16, 16] with one bright square each: the 'in-distribution' kind."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (count, 1, 16, 16)).astype(np.uint8)
    for image, (row, col) in zip(images, rng.integers(2, 10, (count, 2)), strict=True):
        image[0, row : row + 5, col : col + 5] = 230
    return images


@pytest.fixture(scope="module")
def plugin() -> SmallCNNPlugin:
    return SmallCNNPlugin.build((1, 16, 16), 3, {"width": 4}, "cpu")


def _embeddings(plugin: SmallCNNPlugin, images: np.ndarray) -> np.ndarray:
    spec = ImageSpec(height=16, width=16, channels=1, mean=(0.5,), std=(0.5,))
    probabilities, embeddings = plugin.predict_with_embedding(normalize(images, spec))
    np.testing.assert_allclose(probabilities, plugin.predict_proba(normalize(images, spec)), atol=1e-6)
    return compact_embedding(embeddings, MAX_DIMS)


def test_the_cnn_embedding_is_its_penultimate_layer_compacted_to_the_bound(plugin: SmallCNNPlugin) -> None:
    spec = ImageSpec(height=16, width=16, channels=1, mean=(0.5,), std=(0.5,))
    _, raw = plugin.predict_with_embedding(normalize(_images(3, 0), spec))
    assert raw.shape == (3, 128)
    compact = compact_embedding(raw, MAX_DIMS)
    assert compact.shape == (3, MAX_DIMS)
    # The same projection every time (the service and the baseline must agree); a small one is kept as it is.
    np.testing.assert_array_equal(compact, compact_embedding(raw, MAX_DIMS))
    np.testing.assert_array_equal(compact_embedding(raw[:, :8], MAX_DIMS), np.round(raw[:, :8], 4))


def test_predictions_are_those_of_eval_mode_whatever_mode_training_left(plugin: SmallCNNPlugin) -> None:
    spec = ImageSpec(height=16, width=16, channels=1, mean=(0.5,), std=(0.5,))
    inputs = normalize(_images(4, 0), spec)
    network = plugin._network
    network.eval()
    with torch.inference_mode():
        expected = torch.softmax(network(torch.from_numpy(inputs)), dim=1).numpy()
    # Each prediction path, with the network left in training mode (dropout on, batch statistics): the answers are
    # still eval mode's, and the same with or without the embedding.
    network.train()
    probabilities, _ = plugin.predict_with_embedding(inputs)
    assert not network.training
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
    network.train()
    np.testing.assert_allclose(plugin.predict_proba(inputs), expected, rtol=1e-6, atol=1e-7)
    assert not network.training


def test_the_projection_is_drawn_once_per_shape_and_cannot_be_changed() -> None:
    _projection.cache_clear()
    compact_embedding(np.ones((1, 128), dtype=np.float32), MAX_DIMS)
    compact_embedding(np.ones((3, 128), dtype=np.float32), MAX_DIMS)
    assert (_projection.cache_info().misses, _projection.cache_info().hits) == (1, 1)
    projection = _projection(128, MAX_DIMS)
    assert projection.shape == (128, MAX_DIMS)
    with pytest.raises(ValueError, match="read-only"):
        projection[0, 0] = 1.0


def test_same_distribution_is_no_drift_and_shifted_inputs_are_drift(plugin: SmallCNNPlugin) -> None:
    reference = _embeddings(plugin, _images(600, 1))
    same = embedding_drift(_embeddings(plugin, _images(200, 2)), reference, SETTINGS.embedding, 100)
    inverted = embedding_drift(_embeddings(plugin, 255 - _images(200, 3)), reference, SETTINGS.embedding, 100)
    assert (same.signal, same.verdict, same.method) == (EMBEDDING, NO_DRIFT, EMBEDDING_METHOD)
    assert (same.drift_threshold, same.severe_threshold) == (0.65, 0.85)
    assert same.statistic < 0.65
    assert inverted.verdict in (DRIFT, SEVERE_DRIFT)
    assert inverted.statistic >= 0.65


def test_too_few_embeddings_or_other_dimensions_are_not_enough_data(plugin: SmallCNNPlugin) -> None:
    reference = _embeddings(plugin, _images(200, 1))
    few = embedding_drift(reference[:50], reference, SETTINGS.embedding, 100)
    assert (few.verdict, few.statistic) == (NOT_ENOUGH_DATA, None)
    assert few.detail == (
        "50 logged embedding(s) against 200 in the baseline; at least 100 needed (monitoring.min_embeddings)"
    )
    other = embedding_drift(reference[:, :16], reference, SETTINGS.embedding, 100)
    assert other.verdict == NOT_ENOUGH_DATA
    assert other.detail.startswith("logged embeddings have 16 numbers, the baseline's 32")


def test_a_plugin_without_an_embedding_says_so() -> None:
    assert (SmallCNNPlugin.has_embedding, SoftmaxRegressionPlugin.has_embedding) == (True, False)
    plugin = SoftmaxRegressionPlugin.build((1, 4, 4), 2, {}, "cpu")
    probabilities, embeddings = plugin.predict_with_embedding(np.zeros((2, 1, 4, 4), dtype=np.float32))
    assert (probabilities.shape, embeddings) == ((2, 2), None)


def _cnn_baseline(directory: Path, count: int = 2000) -> tuple[MonitoringBaseline, pd.DataFrame, pd.DataFrame]:
    """A CNN model's stored baseline: input statistics, held-out answers and their 128-number embeddings."""
    rng = np.random.default_rng(1)
    inputs, predictions = baseline_frames(count, rng=rng)
    directory.mkdir(parents=True)
    inputs.to_csv(directory / INPUTS_FILE, index=False)
    predictions.to_csv(directory / PREDICTIONS_FILE, index=False)
    np.save(directory / EMBEDDINGS_FILE, rng.normal(0, 1, (count, 128)).astype(np.float16))
    baseline = MonitoringBaseline(str(directory), "f" * 64, "d" * 64, "code", count, count, (), "cnn", 128)
    return baseline, inputs, predictions


def _assess(tmp_path: Path, records: list[dict], baseline: MonitoringBaseline):
    write_log(tmp_path / "predictions", DAY, records)
    log = read_day(FolderPredictionStore(tmp_path / "predictions"), DAY)
    return assess_day(log, MonitoredVersion(4, TAG, "f" * 64), baseline, SETTINGS)


def test_a_day_without_logged_embeddings_leaves_the_other_signals_verdicts_standing(tmp_path: Path) -> None:
    # A CNN model whose service logged no embedding (built before embedding logging, or with a sample rate of 0):
    # embedding drift is not monitored, and the day's other signals still decide the verdict.
    baseline, inputs, predictions = _cnn_baseline(tmp_path / "baseline")
    assessment = _assess(tmp_path, records_like(inputs, predictions, 400, TAG, seed=5), baseline)
    assert [(v.signal, v.verdict) for v in assessment.verdicts] == [
        *[(signal, NO_DRIFT) for signal in DRIFT_SIGNALS],
        (EMBEDDING, NOT_MONITORED),
    ]
    assert assessment.verdicts[-1].detail == (
        "the service logged no embeddings: none of the 400 prediction(s) carries one (a bento built before embedding "
        "logging, or monitoring.capture.embeddings.sample_rate 0 when it was built)"
    )
    assert assessment.overall == NO_DRIFT


def test_too_few_sampled_embeddings_are_still_not_enough_data(tmp_path: Path) -> None:
    # Embeddings were logged, but fewer than monitoring.min_embeddings: a gap in the day, not a missing signal.
    baseline, inputs, predictions = _cnn_baseline(tmp_path / "baseline")
    records = records_like(inputs, predictions, 400, TAG, seed=5)
    sampled = compact_embedding(baseline.embeddings()[:50], MAX_DIMS)
    for record, embedding in zip(records, sampled, strict=False):
        record["embedding"] = [float(value) for value in embedding]
    assessment = _assess(tmp_path, records, baseline)
    assert (assessment.verdicts[-1].signal, assessment.verdicts[-1].verdict) == (EMBEDDING, NOT_ENOUGH_DATA)
    assert assessment.verdicts[-1].detail == (
        "50 logged embedding(s) against 2000 in the baseline; at least 100 needed (monitoring.min_embeddings)"
    )
    assert assessment.overall == NOT_ENOUGH_DATA
