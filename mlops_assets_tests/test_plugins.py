from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.deterministic

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.preprocessing import ImageSpec, normalize
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.evaluation import evaluate_package
from mlops_assets.lib.models.model_package import directory_sha256, load_package
from mlops_assets.lib.models.plugins import ALLOW_IMPORT_PATHS_ENV, resolve_plugin
from mlops_assets.lib.models.plugins.base import ArrayDataset, TrainSettings
from mlops_assets.lib.models.plugins.cnn import SmallCNNPlugin, _Batches
from mlops_assets.lib.models.plugins.softmax import SoftmaxRegressionPlugin
from mlops_assets.lib.models.training import train_model
from mlops_assets.lib.settings_validation import ConfigError


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


def test_unknown_plugin_and_non_plugin_classes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_IMPORT_PATHS_ENV, raising=False)
    with pytest.raises(PluginError) as unknown:
        resolve_plugin("does-not-exist")
    assert str(unknown.value) == (
        "Unknown model plug-in 'does-not-exist'. Use one of ['cnn', 'softmax'], or install it under the "
        "'mlops_assets.model_plugins' entry points."
    )
    # Import paths (allowed by the operator here) must name an importable ModelPlugin subclass.
    monkeypatch.setenv(ALLOW_IMPORT_PATHS_ENV, "1")
    with pytest.raises(PluginError) as malformed:
        resolve_plugin(".relative:Model")
    assert (
        str(malformed.value)
        == "Model plug-in '.relative:Model' is not an import path of the form 'package.module:Class'."
    )
    with pytest.raises(PluginError, match=r"'pathlib:Path' is not a subclass of .*ModelPlugin"):
        resolve_plugin("pathlib:Path")
    with pytest.raises(PluginError, match=r"Cannot import model plug-in 'no_such_module:Model': No module named"):
        resolve_plugin("no_such_module:Model")
    assert resolve_plugin("mlops_assets.lib.models.plugins.softmax:SoftmaxRegressionPlugin") is SoftmaxRegressionPlugin
    assert resolve_plugin("softmax") is SoftmaxRegressionPlugin


def test_unknown_cnn_parameters_are_refused() -> None:
    with pytest.raises(ConfigError) as error:
        resolve_plugin("cnn").build((1, 8, 8), 10, {"wdith": 8}, "cpu")
    assert str(error.value) == (
        "plugin_params of model plug-in 'cnn': wdith = 8: unknown setting (known: deterministic, dropout, width)"
    )


def test_cnn_deterministic_parameter_must_be_0_or_1() -> None:
    with pytest.raises(ConfigError) as error:
        resolve_plugin("cnn").build((1, 8, 8), 10, {"deterministic": 0.5}, "cpu")
    assert str(error.value) == (
        "plugin_params of model plug-in 'cnn': deterministic = 0.5: expected 1 (bit-identical weights on CPU for the "
        "same data, code and seed) or 0 (fastest algorithms)"
    )


@pytest.mark.parametrize(
    ("plugin", "params", "problems"),
    [
        ("cnn", {"width": 32.0, "dropout": 0, "deterministic": 1.0}, []),  # run config turns integers into floats
        (
            "cnn",
            {"dropout": 5, "width": -3},
            ["dropout = 5: expected a number >= 0 and < 1", "width = -3: expected an integer from 1 to 1024"],
        ),
        (
            "cnn",
            {"width": 8.5, "dropout": "0.5"},
            ["width = 8.5: expected an integer from 1 to 1024", "dropout = '0.5': expected a number >= 0 and < 1"],
        ),
        (
            "cnn",
            {"dropout": float("nan"), "width": True},
            ["dropout = nan: expected a number >= 0 and < 1", "width = True: expected an integer from 1 to 1024"],
        ),
        ("softmax", {"l2": 0.0}, []),
        (
            "softmax",
            {"l2": -1, "width": 3},
            ["l2 = -1: expected a number >= 0", "width = 3: unknown setting (known: l2)"],
        ),
    ],
)
def test_plugins_check_their_params(plugin: str, params: dict, problems: list[str]) -> None:
    assert resolve_plugin(plugin).check_params(params) == problems


def test_a_plugin_without_declared_params_takes_any_finite_numbers() -> None:
    class Loose(SoftmaxRegressionPlugin):
        param_ranges = None

    assert Loose.check_params({"anything": 3, "l2": 0.1}) == []
    assert Loose.check_params({"anything": "3"}) == ["anything = '3': expected a number"]


def test_cnn_trains_on_exactly_the_inputs_serving_normalizes_to() -> None:
    # Training looks pixels up in a table that `normalize` built; serving calls `normalize` itself. Every level of
    # every channel appears, so any rounding difference between the two would show.
    rng = np.random.default_rng(3)
    spec = ImageSpec(16, 16, 3, mean=(0.1, 0.5, 0.9), std=(0.07, 0.3, 1.1))
    images = rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    images[7] = np.arange(256, dtype=np.uint8).reshape(16, 16)
    labels = np.arange(40) % 10
    order = rng.permutation(40)
    batches = list(_Batches(ArrayDataset(images, labels, spec), "cpu").iterate(order, 16))
    assert [len(targets) for _, targets in batches] == [16, 16, 8]
    assert all(inputs.is_contiguous(memory_format=torch.channels_last) for inputs, _ in batches)
    inputs = torch.cat([inputs for inputs, _ in batches]).contiguous().numpy()
    assert inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs.view(np.uint32), normalize(images[order], spec).view(np.uint32))
    assert torch.cat([targets for _, targets in batches]).tolist() == labels[order].tolist()


def _torch_flags() -> tuple[int, bool, bool]:
    return (
        torch.get_deterministic_debug_mode(),
        torch.backends.cudnn.benchmark,
        torch.utils.deterministic.fill_uninitialized_memory,
    )


def test_cnn_training_sets_torch_flags_only_while_it_runs(validated) -> None:
    train, validation = validated.load_split("train"), validated.load_split("val")
    settings = TrainSettings(epochs=1, batch_size=64, seed=0, device="cpu")
    before = _torch_flags()
    during = []
    for params in ({}, {"deterministic": 0}):
        plugin = SmallCNNPlugin.build(train.spec.input_shape, len(validated.labels), params, "cpu")
        plugin.train(train, validation, settings, lambda _record: during.append(_torch_flags()))
        assert _torch_flags() == before
    # (deterministic mode 1 = warn, cuDNN autotuning, NaN-filling of new tensors)
    assert during == [(1, False, False), (0, True, False)]


def test_cnn_epoch_figures_are_those_of_the_trained_network(validated) -> None:
    # Losses and hits are summed on the device over the epoch; the validation figures must be what the trained
    # network predicts for the validation split.
    train, validation = validated.load_split("train"), validated.load_split("val")
    plugin = SmallCNNPlugin.build(train.spec.input_shape, len(validated.labels), {}, "cpu")
    history = plugin.train(train, validation, TrainSettings(epochs=2, batch_size=32, seed=1, device="cpu"))
    assert [record.epoch for record in history] == [1, 2]
    probabilities = plugin.predict_proba(normalize(validation.images, validation.spec))
    assert history[-1].val_accuracy == float(np.mean(probabilities.argmax(axis=1) == validation.labels))
    picked = probabilities[np.arange(len(validation)), validation.labels]
    assert history[-1].val_loss == pytest.approx(float(-np.log(picked).mean()), rel=1e-4)
