"""Training throughput: the cnn plug-in's `train()` against a bare PyTorch loop on the same network, data, batch
size and optimizer, their epochs alternated in one run, with and without deterministic algorithms.

    .venv/bin/python benchmarks/bench_training.py                  # sample digits + 64x64 RGB on this machine's device
    .venv/bin/python benchmarks/bench_training.py --device cuda --amp --results /tmp/training   # a GPU, bf16 too
    .venv/bin/python benchmarks/bench_training.py --rgb-images 100 --repeats 1 --results /tmp/training  # a quick look
    .venv/bin/python benchmarks/bench_training.py --report-only    # training.md and README.md from training.json

Both datasets are built the way `validated_images` builds them (decoded, validated, stored as uint8 arrays): the
sample digits (8x8 greyscale, 1,797 images) and generated 64x64 RGB images (`synthetic_images.py`). The loops:

- `plugin`: `SmallCNNPlugin.build(...).train(train, val, settings)` on the stored arrays: exactly what
  `trained_model` calls. `plugin_fast`: the same with the plug-in parameter `deterministic: 0`.
- `bare`: the loop a user would write on the same network (`cnn.make_network`): the split normalized once by
  `normalize` into float tensors on the device, a `torch.randperm` shuffle, Adam, cross-entropy, loss and accuracy
  summed on the device, a validation pass each epoch; seeded, with `torch.use_deterministic_algorithms(True)`.
  `bare_fast`: without deterministic algorithms (cuDNN autotuning on a GPU); `bare_amp` (`--amp`, CUDA only): that
  under bf16 autocast.

Per repeat the plug-in trains twice (deterministic and not, the order alternating), and after each of its epochs
every bare loop runs one epoch (their order rotated), so the epochs compared meet the same load; epochs are timed
from outside the loops (the plug-in's through its `on_epoch` callback). torch's one-off lazy imports are paid before
anything is timed and reported apart. The load average is recorded before and after. Writes training.json and
training.md to --results (benchmarks/results by default); only a run written there also rewrites the training
section in README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.utils.deterministic
from torch import nn

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.preprocessing import normalize
from mlops_assets.lib.data.sample_data import export_digits
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.models.model_package import directory_sha256
from mlops_assets.lib.models.plugins.base import ArrayDataset, EpochRecord, TrainSettings
from mlops_assets.lib.models.plugins.cnn import DEFAULT_PARAMS, SmallCNNPlugin, make_network, resolve_device

if not __package__:  # run as a script, not imported: the `benchmarks` package lives in the project root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import readme_sections  # noqa: E402
from benchmarks.synthetic_images import generate_dataset  # noqa: E402
from benchmarks.training_report import derive, markdown, summary  # noqa: E402

RESULTS = readme_sections.RESULTS
README_SECTION = "training"
# Per device: (64x64 RGB images generated, epochs per run on the digits, epochs per run on the RGB images). Two cores
# take about 8 s per RGB epoch of 600 images (420 to train on) when otherwise idle; a GPU needs many more images for
# an epoch to be measurable.
DEFAULTS = {"cpu": (600, 10, 3), "cuda": (20_000, 10, 3)}


class EpochClock:
    """Wall and process CPU seconds of epochs, measured outside the loop under test (CUDA synchronized)."""

    def __init__(self, device: str) -> None:
        self._cuda = device.startswith("cuda")
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.restart()

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def restart(self) -> None:
        self._sync()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, _record: EpochRecord | None = None) -> None:
        self._sync()
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall.append(wall - self._wall)
        self.cpu.append(cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


class BareLoop:
    """A plain PyTorch loop on the same network, data (normalized once into float tensors on the device), batch size
    and optimizer, run one epoch at a time between the plug-in's epochs.

    It keeps its own torch RNG state and sets its own flags around each epoch (a user's loop: seeded, and
    `torch.use_deterministic_algorithms(True)` with torch's other defaults, unless `fast`), so running it inside the
    plug-in's epoch callback changes neither the plug-in's random stream nor its settings.
    """

    def __init__(
        self,
        train: ArrayDataset,
        validation: ArrayDataset,
        classes: int,
        settings: TrainSettings,
        fast: bool,
        amp: bool,
    ) -> None:
        self._device = torch.device(settings.device)
        self._fast, self._amp, self._batch = fast, amp, settings.batch_size
        started = time.perf_counter()
        with self._own_state(seed=settings.seed):
            width, dropout = DEFAULT_PARAMS["width"], DEFAULT_PARAMS["dropout"]
            self._model = make_network(train.spec.input_shape, classes, width, dropout).to(self._device)
            self._optimizer = torch.optim.Adam(self._model.parameters(), lr=settings.learning_rate)
            self._x_train = torch.from_numpy(normalize(train.images, train.spec)).to(self._device)
            self._y_train = torch.from_numpy(train.labels.astype(np.int64)).to(self._device)
            self._x_val = torch.from_numpy(normalize(validation.images, validation.spec)).to(self._device)
            self._y_val = torch.from_numpy(validation.labels.astype(np.int64)).to(self._device)
        self.clock = EpochClock(settings.device)
        self.setup_s = time.perf_counter() - started
        self.final: dict = {}

    @contextlib.contextmanager
    def _own_state(self, seed: int | None = None) -> Iterator[None]:
        cuda = self._device.type == "cuda"
        outer_flags = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark,
            torch.utils.deterministic.fill_uninitialized_memory,
        )
        outer_rng = (torch.get_rng_state(), torch.cuda.get_rng_state(self._device) if cuda else None)
        if seed is not None:
            torch.manual_seed(seed)
        else:
            torch.set_rng_state(self._rng[0])
            if cuda:
                torch.cuda.set_rng_state(self._rng[1], self._device)
        torch.use_deterministic_algorithms(not self._fast, warn_only=True)
        torch.backends.cudnn.benchmark = self._fast
        torch.utils.deterministic.fill_uninitialized_memory = True
        try:
            yield
        finally:
            self._rng = (torch.get_rng_state(), torch.cuda.get_rng_state(self._device) if cuda else None)
            torch.set_rng_state(outer_rng[0])
            if cuda:
                torch.cuda.set_rng_state(outer_rng[1], self._device)
            torch.use_deterministic_algorithms(outer_flags[0], warn_only=outer_flags[1])
            torch.backends.cudnn.benchmark = outer_flags[2]
            torch.utils.deterministic.fill_uninitialized_memory = outer_flags[3]

    def epoch(self) -> None:
        """One training pass and one validation pass, timed by `clock`."""
        device, batch = self._device, self._batch
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self._amp)
        self.clock.restart()
        with self._own_state():
            model = self._model
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            order = torch.randperm(len(self._y_train), device=device)
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                inputs, targets = self._x_train[index], self._y_train[index]
                with autocast:
                    logits = model(inputs)
                    loss = nn.functional.cross_entropy(logits, targets)
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()
                loss_sum += loss.detach() * len(targets)
                correct += (logits.argmax(dim=1) == targets).sum()
            model.eval()
            val_loss = torch.zeros((), device=device)
            val_correct = torch.zeros((), dtype=torch.int64, device=device)
            with torch.inference_mode(), autocast:
                for start in range(0, len(self._y_val), batch):
                    logits = model(self._x_val[start : start + batch])
                    targets = self._y_val[start : start + batch]
                    val_loss += nn.functional.cross_entropy(logits, targets, reduction="sum").float()
                    val_correct += (logits.argmax(dim=1) == targets).sum()
            self.final = {
                "train_loss": loss_sum.item() / len(self._y_train),
                "val_loss": val_loss.item() / len(self._y_val),
                "val_accuracy": val_correct.item() / len(self._y_val),
            }
        self.clock.lap()

    def record(self) -> dict:
        """The epochs' timings, the first one including the set-up (as the plug-in's first epoch does)."""
        wall = list(self.clock.wall)
        wall[0] += self.setup_s
        return {"epoch_wall_s": wall, "epoch_cpu_s": self.clock.cpu, "setup_s": self.setup_s, "final": self.final}


def run_plugin_call(
    splits: tuple, settings: TrainSettings, fast: bool, companions: dict[str, BareLoop], work: Path
) -> dict:
    """The plug-in as `train_model` drives it (build for the data's shape, then `train`), with each companion bare
    loop running one epoch after each of the plug-in's epochs, so their epochs meet the same load."""
    train, validation, classes = splits
    params = {"deterministic": 0} if fast else {}
    plugin = SmallCNNPlugin.build(train.spec.input_shape, classes, params, settings.device)
    clock = EpochClock(settings.device)

    def between_epochs(record: EpochRecord) -> None:
        clock.lap()
        for companion in companions.values():
            companion.epoch()
        clock.restart()

    history = plugin.train(train, validation, settings, between_epochs)
    weights = Path(tempfile.mkdtemp(dir=work))
    plugin.save(weights)
    last = history[-1]
    return {
        "epoch_wall_s": clock.wall,
        "epoch_cpu_s": clock.cpu,
        "plugin_epoch_s": [record.seconds for record in history],
        "final": {"train_loss": last.train_loss, "val_loss": last.val_loss, "val_accuracy": last.val_accuracy},
        "weights_sha256": directory_sha256(weights),
    }


def validated_splits(root: Path, destination: Path) -> tuple[ArrayDataset, ArrayDataset, int]:
    """The training and validation arrays exactly as `validated_images` stores them, and the number of classes."""
    validated = build_validated_dataset(scan_dataset(root), GeometryConfig(), destination)
    return validated.load_split("train"), validated.load_split("val"), len(validated.labels)


def measure(
    name: str, description: str, splits: tuple, settings: TrainSettings, repeats: int, amp: bool, work: Path
) -> dict:
    """Per repeat, one plug-in run with deterministic algorithms and one without (order rotated), each accompanied
    epoch by epoch by the bare loops (order rotated); the runs in the order they started."""
    bare_variants = ["bare", "bare_fast"] + (["bare_amp"] if amp else [])
    runs = []
    for repeat in range(repeats):
        calls = ["plugin", "plugin_fast"] if repeat % 2 == 0 else ["plugin_fast", "plugin"]
        for call in calls:
            shift = repeat % len(bare_variants)
            companions = {
                variant: BareLoop(*splits, settings, fast=variant != "bare", amp=variant == "bare_amp")
                for variant in bare_variants[shift:] + bare_variants[:shift]
            }
            plugin_run = run_plugin_call(splits, settings, call == "plugin_fast", companions, work)
            runs.append({"variant": call, "repeat": repeat, "call": call, **plugin_run})
            runs += [
                {"variant": variant, "repeat": repeat, "call": call, **loop.record()}
                for variant, loop in companions.items()
            ]
            rates = ", ".join(
                f"{run['variant']} {len(splits[0]) / statistics.median(run['epoch_wall_s']):,.1f}"
                for run in runs[-1 - len(companions) :]
            )
            print(f"{name} repeat {repeat + 1}/{repeats}, images/s: {rates}", file=sys.stderr)
    dataset = {
        "name": name,
        "description": description,
        "input_shape": list(splits[0].spec.input_shape),
        "train_images": len(splits[0]),
        "val_images": len(splits[1]),
        "epochs_per_run": settings.epochs,
        "runs": runs,
    }
    return {**dataset, "derived": derive(dataset)}


def one_off_imports_s() -> float:
    """Seconds of what every training process pays once, whichever loop it runs: torch imports its compiler stack on
    the first optimizer built (and on `use_deterministic_algorithms`). Paid before any loop is timed."""
    started = time.perf_counter()
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    return time.perf_counter() - started


def machine(device: str) -> dict:
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor(),
        "processor": platform.machine(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def uptime() -> str:
    """The load averages over 1, 5 and 15 minutes, as `uptime` prints them."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def run_benchmark(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if args.amp and kind != "cuda":
        raise SystemExit("--amp measures bf16 autocast on a CUDA GPU; this run's device is the CPU.")
    rgb_images, digits_epochs, rgb_epochs = DEFAULTS[kind]
    rgb_images = args.rgb_images or rgb_images
    # Before any work of the run's own (building the datasets decodes on every core), so it counts other work only.
    load_before, uptime_before = os.getloadavg(), uptime()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as temporary:
        work = Path(temporary)
        sources = {
            "digits": ("sample digits, 8x8 greyscale", lambda: export_digits(work / "digits"), digits_epochs),
            "rgb64": (
                "generated images, 64x64 RGB",
                lambda: generate_dataset(work / "rgb64", rgb_images, side=64, channels=3),
                rgb_epochs,
            ),
        }
        chosen = {name: source for name, source in sources.items() if name in args.datasets}
        splits = {name: validated_splits(make(), work / f"{name}-validated") for name, (_, make, _) in chosen.items()}
        one_off_s = one_off_imports_s()
        datasets = []
        for name, (description, _, default_epochs) in chosen.items():
            epochs = {"digits": args.digits_epochs, "rgb64": args.rgb_epochs}[name] or default_epochs
            settings = TrainSettings(epochs, args.batch_size, learning_rate=1e-3, seed=0, device=device)
            datasets.append(measure(name, description, splits[name], settings, args.repeats, args.amp, work))
        load_after, uptime_after = os.getloadavg(), uptime()
    return {
        "benchmark": "training throughput: the cnn plug-in's train() against a bare PyTorch loop",
        "machine": machine(device),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "uptime": {"before": uptime_before, "after": uptime_after},
        "settings": {
            "batch_size": args.batch_size,
            "learning_rate": 1e-3,
            "seed": 0,
            "repeats": args.repeats,
            "amp": args.amp,
            "width": DEFAULT_PARAMS["width"],
        },
        "one_off_imports_s": round(one_off_s, 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "datasets": datasets,
    }


def write_reports(result: dict, results: Path) -> None:
    """training.md, and the README's section when `results` is the committed folder."""
    (results / "training.md").write_text(markdown(result))
    if readme_sections.is_committed(results):
        readme_sections.update_readme(README_SECTION, summary(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu or cuda[:N]")
    parser.add_argument("--repeats", type=int, default=3, help="times every loop runs, per dataset")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rgb-images", type=int, default=0, help="64x64 RGB images to generate (0: per device)")
    parser.add_argument("--digits-epochs", type=int, default=0, help="epochs per run on the digits (0: per device)")
    parser.add_argument("--rgb-epochs", type=int, default=0, help="epochs per run on the RGB images (0: per device)")
    parser.add_argument("--datasets", nargs="+", default=["digits", "rgb64"], choices=["digits", "rgb64"])
    parser.add_argument("--amp", action="store_true", help="also measure the bare loop under bf16 autocast (CUDA)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for training.json and training.md (README.md is only"
        " rewritten from the committed folder, benchmarks/results)"
    )  # fmt: skip
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite training.md (and the README's section) from the folder's training.json",
    )
    args = parser.parse_args()
    readme_sections.refuse_a_partial_run(
        parser, args, ("repeats", "batch_size", "rgb_images", "digits_epochs", "rgb_epochs", "datasets"), "section"
    )
    if args.report_only:
        write_reports(json.loads((args.results / "training.json").read_text()), args.results)
        return
    result = run_benchmark(args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "training.json").write_text(json.dumps(result, indent=1))
    write_reports(result, args.results)
    print(summary(result))


if __name__ == "__main__":
    main()
