from pathlib import Path

import numpy as np
import pytest

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.preprocessing import normalize
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.evaluation import evaluate_package
from mlops_assets.lib.models.model_package import directory_sha256, load_package
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.models.plugins.base import TrainSettings
from mlops_assets.lib.models.plugins.softmax import SoftmaxRegressionPlugin
from mlops_assets.lib.models.training import train_model


@pytest.fixture(scope="module")
def validated(digits_subset: Path, tmp_path_factory: pytest.TempPathFactory):
    destination = tmp_path_factory.mktemp("validated") / "digits"
    return build_validated_dataset(scan_dataset(digits_subset), GeometryConfig(), destination)


@pytest.mark.parametrize("plugin_name", ["cnn", "softmax"])
def test_plugins_learn_digits_and_round_trip_through_a_package(validated, tmp_path: Path, plugin_name: str) -> None:
    settings = TrainSettings(epochs=12, batch_size=32, learning_rate=2e-3, seed=0, device="cpu")
    model = train_model(validated, plugin_name, {}, settings, tmp_path / "package")
    history = model.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    report = evaluate_package(model.directory, validated)
    assert report.accuracy > 0.8, report.metrics

    loaded = load_package(Path(model.directory), device="cpu")
    test = validated.load_split("test")
    direct = loaded.predict_proba(normalize(test.images, test.spec))
    np.testing.assert_allclose(direct.sum(axis=1), 1.0, rtol=1e-5)
    assert loaded.weights_sha256 == model.weights_sha256


def test_same_data_code_and_seed_give_bit_identical_cnn_weights(validated, tmp_path: Path) -> None:
    settings = TrainSettings(epochs=2, batch_size=32, seed=7, device="cpu")
    first = train_model(validated, "cnn", {}, settings, tmp_path / "first")
    second = train_model(validated, "cnn", {}, settings, tmp_path / "second")
    assert first.weights_sha256 == second.weights_sha256
    assert directory_sha256(Path(first.directory) / "model") == first.weights_sha256


def test_unknown_plugin_and_non_plugin_classes_are_refused() -> None:
    with pytest.raises(PluginError, match=r"Unknown model plug-in 'does-not-exist'\. Use one of \[.*'cnn'"):
        resolve_plugin("does-not-exist")
    with pytest.raises(PluginError, match=r"'pathlib:Path' is not a subclass of .*ModelPlugin"):
        resolve_plugin("pathlib:Path")
    with pytest.raises(PluginError, match=r"Cannot import model plug-in 'no_such_module:Model': No module named"):
        resolve_plugin("no_such_module:Model")
    assert resolve_plugin("mlops_assets.lib.models.plugins.softmax:SoftmaxRegressionPlugin") is SoftmaxRegressionPlugin
    assert resolve_plugin("softmax") is SoftmaxRegressionPlugin


def test_unknown_cnn_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown cnn parameters.*wdith"):
        resolve_plugin("cnn").build((1, 8, 8), 10, {"wdith": 8}, "cpu")
