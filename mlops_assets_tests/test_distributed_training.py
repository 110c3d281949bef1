"""Data-parallel training: torch DDP launched by torchrun from the trained_model asset through Dagster Pipes.

Two CPU processes (gloo) reach the single-process accuracy, repeat bit-identical weights, and stream every epoch back
to the run; a worker killed mid-training fails the run with a message naming it, leaving no package and no new
model version; settings that cannot train data-parallel are refused before a run exists.
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest
import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from mlops_assets.config_checks import check_run_config
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.environments import LOCAL, resources_for
from mlops_assets.lib.models.data_parallel import Replicas, device_problem
from mlops_assets.lib.models.distributed import MODULE, WORKER, describe_failure
from mlops_assets.lib.models.evaluation import evaluate_package
from mlops_assets.lib.models.plugins.base import EpochRecord
from mlops_assets.lib.models.training import TrainedModel, epoch_summary
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets_tests.cli_processes import (
    brightness_dataset,
    instance,
    kill_unfinished,
    leftovers,
    registry,
    start_run,
    wait_for,
    wait_for_step,
)

EPOCHS = 5


def test_replicas_share_every_batch_and_each_gets_an_image_in_every_step() -> None:
    order = np.array([9, 3, 7, 1, 0, 8, 2, 6, 4, 5])
    shares = [Replicas(rank, 3).share_batches(order, 4) for rank in range(3)]
    # Batches [9 3 7 1], [0 8 2 6], [4 5] + 9 (the last batch is topped up from the start to one image per replica).
    assert [list(indices) for indices, _ in shares] == [[9, 1, 0, 6, 4], [3, 8, 5], [7, 2, 9]]
    assert [steps for _, steps in shares] == [
        [(2, 4), (4, 4), (5, 3)],
        [(1, 4), (2, 4), (3, 3)],
        [(1, 4), (2, 4), (3, 3)],
    ]
    assert [list(Replicas(rank, 3).share(5)) for rank in range(3)] == [[0, 3], [1, 4], [2]]


def _refusal(trained_model_config: dict) -> str:
    job = build_definitions().resolve_job_def(PIPELINE_JOB_NAME)
    with pytest.raises(ConfigError) as refused:
        check_run_config({"ops": {"trained_model": {"config": trained_model_config}}}, job)
    return str(refused.value)


def test_settings_that_cannot_train_data_parallel_are_refused_before_a_run() -> None:
    setting = "run config: ops.trained_model.config.processes"
    bounds = "(expected an integer from 1 to 64)"
    assert _refusal({"processes": 0}) == f"{setting} = 0: expected an integer from 1 to 64"
    assert _refusal({"processes": 65}) == f"{setting} = 65: expected an integer from 1 to 64"
    assert _refusal({"plugin": "softmax", "processes": 2}) == (
        f"{setting} = 2: model plug-in 'softmax' trains in one process only; set processes to 1 {bounds}"
    )
    assert _refusal({"device": "cuda:1", "processes": 2}) == (
        f"{setting} = 2: device 'cuda:1' cannot be shared by processes; set device to 'auto', 'cuda' (one GPU per "
        f"process) or 'cpu', or processes to 1 {bounds}"
    )
    assert _refusal({"batch_size": 4, "processes": 8}) == (
        f"{setting} = 8: each process trains on a share of every batch of batch_size = 4 images; use at most 4 "
        f"processes {bounds}"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_gpu_processes_without_a_gpu_are_refused_by_the_launcher() -> None:
    assert device_problem("cuda", 2) == "device 'cuda' was requested but no CUDA GPU is visible; use 'auto' or 'cpu'"
    assert device_problem("auto", 2) == ""
    assert device_problem("cpu", 8) == ""


def test_torchruns_root_cause_names_the_worker_and_its_error(tmp_path: Path) -> None:
    # The error file a worker's `record` writes when it raises (torch.distributed.elastic's format).
    error_file = tmp_path / "error.json"
    error = {"message": "PluginError: Model plug-in 'x' trains in one process only.", "extraInfo": {"timestamp": "1"}}
    error_file.write_text(json.dumps({"message": error}))
    raised = ChildFailedError(MODULE, {1: ProcessFailure(1, 4242, 1, str(error_file))})
    assert describe_failure(raised, 2) == (
        "worker 1 of 2 failed: PluginError: Model plug-in 'x' trains in one process only."
    )
    killed = ChildFailedError(MODULE, {1: ProcessFailure(1, 4243, -9, "<N/A>")})
    assert describe_failure(killed, 2) == "worker 1 of 2 was killed by SIGKILL"


def test_the_root_cause_is_the_killed_worker_not_the_one_torchrun_stopped_because_of_it(tmp_path: Path) -> None:
    # torchrun stamps both failures in the same second when it notices worker 1's death and stops worker 0 with
    # SIGTERM; its own `get_first_failure` then blames rank 0.
    stopped, killed = ProcessFailure(0, 4250, -15, "<N/A>"), ProcessFailure(1, 4251, -9, "<N/A>")
    killed.timestamp = stopped.timestamp
    raised = ChildFailedError(MODULE, {0: stopped, 1: killed})
    assert raised.get_first_failure()[0] == 0
    assert describe_failure(raised, 2) == "worker 1 of 2 was killed by SIGKILL"
    # A worker whose gloo collective lost its peer is an effect too; the peer's exception is the cause.
    lost_peer, cause = tmp_path / "lost.json", tmp_path / "cause.json"
    for path, text in (
        (lost_peer, "RuntimeError: [Gloo] Connection closed by peer [127.0.0.1]:4000"),
        (cause, "OutOfMemoryError: CUDA out of memory."),
    ):
        path.write_text(json.dumps({"message": {"message": text, "extraInfo": {"timestamp": "5"}}}))
    raised = ChildFailedError(
        MODULE, {0: ProcessFailure(0, 4252, 1, str(lost_peer)), 1: ProcessFailure(1, 4253, 1, str(cause))}
    )
    assert describe_failure(raised, 2) == "worker 1 of 2 failed: OutOfMemoryError: CUDA out of memory."
    # Only stopped workers: the earliest, then the lowest rank.
    raised = ChildFailedError(
        MODULE, {1: ProcessFailure(1, 4254, -15, "<N/A>"), 0: ProcessFailure(0, 4255, -15, "<N/A>")}
    )
    raised.failures[1].timestamp = raised.failures[0].timestamp
    assert describe_failure(raised, 2) == "worker 0 of 2 was killed by SIGTERM"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """The bundled sample digits (1,797 images; 268 test images, so 2 points are 5 images), validated once; step
    outputs kept on disk so each test materializes trained_model alone."""
    # The local environment's own resources (under the session's MLOPS_HOME), with step outputs kept on disk.
    outputs = tmp_path_factory.mktemp("data_parallel_outputs")
    resources = {**resources_for(LOCAL), "io_manager": dg.FilesystemIOManager(base_dir=str(outputs))}
    result = dg.materialize([raw_images, validated_images], resources=resources)
    return resources, result.output_for_node("validated_images")


def _train(resources: dict, processes: int, device: str = "cpu") -> tuple[TrainedModel, list[str]]:
    """trained_model materialized with `processes`; the model and the run's log lines that report epochs."""
    dagster = dg.DagsterInstance.ephemeral()
    config = {"epochs": EPOCHS, "seed": 3, "device": device, "processes": processes}
    result = dg.materialize(
        [raw_images, validated_images, trained_model],
        selection=[trained_model],
        resources=resources,
        instance=dagster,
        run_config={"ops": {"trained_model": {"config": config}}},
    )
    lines = [entry.user_message for entry in dagster.all_logs(result.run_id) if entry.user_message.startswith("epoch")]
    return result.output_for_node("trained_model"), lines


@pytest.mark.e2e
def test_two_cpu_processes_reach_the_single_process_accuracy_and_repeat_their_weights(digits) -> None:
    resources, validated = digits
    single, _ = _train(resources, 1)
    parallel, streamed = _train(resources, 2)

    alone = evaluate_package(single.directory, validated, device="cpu").accuracy
    together = evaluate_package(parallel.directory, validated, device="cpu").accuracy
    assert alone >= 0.95, alone
    assert abs(together - alone) <= 0.02, (alone, together)
    # The same package format and record: settings with the process count, one history row per epoch.
    assert (single.settings["processes"], parallel.settings["processes"]) == (1, 2)
    assert [row["epoch"] for row in parallel.history] == list(range(1, EPOCHS + 1))
    # Rank 0 streamed every epoch through Pipes into the run's log, exactly as the package records it.
    assert streamed == [epoch_summary(EpochRecord(**row), EPOCHS) for row in parallel.history]

    # The same seed and process count give bit-identical weights and the same history.
    shutil.rmtree(parallel.directory)
    again, _ = _train(resources, 2)
    assert again.weights_sha256 == parallel.weights_sha256
    assert [{**row, "seconds": 0} for row in again.history] == [{**row, "seconds": 0} for row in parallel.history]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per process: two CUDA GPUs")
def test_two_gpus_reach_the_single_gpu_accuracy(digits) -> None:
    resources, validated = digits
    single, _ = _train(resources, 1, "cuda")
    parallel, streamed = _train(resources, 2, "cuda")
    alone = evaluate_package(single.directory, validated, device="cpu").accuracy
    together = evaluate_package(parallel.directory, validated, device="cpu").accuracy
    assert abs(together - alone) <= 0.02, (alone, together)
    assert (parallel.device, parallel.settings["processes"]) == ("cuda:0", 2)
    assert streamed == [epoch_summary(EpochRecord(**row), EPOCHS) for row in parallel.history]


def _workers(pid: int) -> list[psutil.Process]:
    """The torchrun workers below process `pid`."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.cmdline()[-2:] == [MODULE, WORKER]:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _log_lines(home: Path, run_id: str) -> list[str]:
    with instance(home) as dagster:
        return [entry.user_message for entry in dagster.all_logs(run_id)]


@pytest.mark.e2e
def test_a_worker_killed_mid_training_fails_the_run_with_no_package_and_no_new_version(tmp_path: Path) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    dataset = brightness_dataset(tmp_path / "data", seed=5)
    config = tmp_path / "ddp.yaml"
    config.write_text("ops: {trained_model: {config: {plugin: cnn, epochs: 5000, batch_size: 8, processes: 2}}}\n")
    process = start_run(home, logs, "ddp", dataset, config)
    try:
        run_id = wait_for_step(home, process, "trained_model")
        wait_for("epoch 1 in the run's log", lambda: "epoch 1/5000" in " ".join(_log_lines(home, run_id)), process, 0.2)
        workers = _workers(process.pid)
        assert len(workers) == 2
        (victim,) = [worker for worker in workers if worker.environ()["RANK"] == "1"]
        victim.kill()
        finished = process.finish(timeout=180)
    finally:
        kill_unfinished()

    assert finished.returncode == 1, finished.stderr
    message = (
        "Data-parallel training with 2 processes failed: worker 1 of 2 was killed by SIGKILL. No model package was "
        "stored; materialize trained_model again once the cause is fixed."
    )
    assert message in finished.stderr + finished.stdout
    # torchrun stopped the other worker: nothing is left running, waiting for its dead peer.
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    packages = home / "artifacts" / "trained_model"
    assert (sorted(packages.iterdir()) if packages.exists() else []) == []
    assert leftovers(home) == []
    assert registry(home).versions() == []
