"""Data-parallel training as torchrun runs it, for the trained_model asset, which starts `launch` through Dagster Pipes.

`launch` checks that the machine has a device for every process, then runs torchrun (`torch.distributed.run`, the
`torchrun` command's own code) with one `worker` per process on this machine. Each worker trains one replica (gloo
between CPU processes, NCCL with one GPU per process) and reads what to train from the Pipes context; rank 0 also
opens the Pipes message channel, streams every epoch back to the Dagster run and, after training, writes the model
package (atomically). When a worker fails or is killed, torchrun stops the others (no worker waits forever for a dead
peer) and `launch` writes which worker failed and why to its report file, for the asset's error message.

Only dagster_pipes, the external-process half of Dagster Pipes, is imported here, never Dagster.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.models.plugins.base import TrainSettings

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

MODULE = "mlops_assets.lib.models.distributed"
LAUNCH, WORKER = "launch", "worker"
_EXTRAS_KEY = "data_parallel_job"
_PR_SET_PDEATHSIG = 1  # prctl(2) option, from <linux/prctl.h>


@dataclass(frozen=True)
class DataParallelJob:
    """What every worker trains and where rank 0 writes the package; travels as the Pipes context's extras (JSON)."""

    dataset: dict[str, Any]  # the ValidatedDataset's fields
    plugin: str
    params: dict[str, Any]
    settings: dict[str, Any]  # the TrainSettings' fields
    processes: int
    destination: str
    version: str

    @classmethod
    def create(
        cls,
        data: ValidatedDataset,
        plugin: str,
        params: dict[str, Any],
        settings: TrainSettings,
        processes: int,
        destination: Path,
        version: str,
    ) -> DataParallelJob:
        return cls(asdict(data), plugin, dict(params), asdict(settings), processes, str(destination), version)

    def extras(self) -> dict[str, Any]:
        """The Pipes extras that carry this job."""
        return {_EXTRAS_KEY: asdict(self)}

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> DataParallelJob:
        return cls(**extras[_EXTRAS_KEY])

    def validated_dataset(self) -> ValidatedDataset:
        return ValidatedDataset(**{**self.dataset, "labels": tuple(self.dataset["labels"])})

    def train_settings(self, device: str) -> TrainSettings:
        """The job's settings with this replica's own device."""
        return TrainSettings(**{**self.settings, "device": device})


def launch_command(processes: int, report: Path) -> list[str]:
    """The command that trains a job with `processes` workers; a failure is described in the JSON file `report`."""
    return [sys.executable, "-m", MODULE, LAUNCH, "--processes", str(processes), "--report", str(report)]


def read_failure(report: Path) -> str:
    """What `launch` wrote about a failure ('' when it wrote nothing: it was itself killed, or did not fail)."""
    try:
        return json.loads(report.read_text())["problem"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return ""


# What a worker dies of when a peer died first: torchrun stops the remaining workers with SIGTERM, and a gloo
# collective whose peer is gone raises one of these.
_PEER_LOSS_MESSAGES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def _is_consequence(failure: ProcessFailure) -> bool:
    """Whether this failure is likely the effect of another worker's failure rather than its cause."""
    if failure.exitcode == -signal.SIGTERM:
        return True
    message = failure.message
    text = str(message.get("message", "")) if isinstance(message, dict) else str(message)
    return any(peer_loss in text for peer_loss in _PEER_LOSS_MESSAGES)


def root_cause(error: ChildFailedError) -> tuple[int, ProcessFailure]:
    """The worker whose failure stopped the others, and that failure.

    torchrun's own `get_first_failure` takes the earliest timestamp, but a worker killed without an error file is
    stamped (in whole seconds) when torchrun notices it, as are the workers torchrun then stops with SIGTERM; ties go
    to rank 0, which then gets blamed for a peer's death. So failures that are the usual consequence of a peer's
    failure (SIGTERM, a lost gloo connection) rank after the others; then the earliest, then the lowest rank."""
    return min(error.failures.items(), key=lambda item: (_is_consequence(item[1]), item[1].timestamp, item[0]))


def describe_failure(error: ChildFailedError, processes: int) -> str:
    """The root cause of torchrun's failure (see `root_cause`), in words."""
    rank, failure = root_cause(error)
    worker = f"worker {rank} of {processes}"
    if failure.exitcode < 0:
        return f"{worker} was killed by {failure.signal_name()}"
    message = failure.message
    if isinstance(message, dict):  # an error file written by the worker's `record`: the exception and its trace
        return f"{worker} failed: {str(message.get('message', '')).splitlines()[0]}"
    return f"{worker} exited with code {failure.exitcode}"


def _job_from_pipes() -> DataParallelJob:
    """The job from the Pipes context, read without opening the message channel (only rank 0 opens it)."""
    from dagster_pipes import PipesDefaultContextLoader, PipesEnvVarParamsLoader

    params = PipesEnvVarParamsLoader().load_context_params()
    with PipesDefaultContextLoader().load_context(params) as context:
        return DataParallelJob.from_extras(context["extras"])


def _write_report(report: Path, problem: str) -> None:
    report.write_text(json.dumps({"problem": problem}))


def _stop_with_parent() -> None:
    """On Linux, have the kernel send this launcher SIGTERM when the process that started it (the Dagster run) dies,
    so torchrun stops its workers instead of training on for a run that no longer exists."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def launch(processes: int, report: Path) -> int:
    """Run the Pipes context's job on `processes` workers under torchrun; 0 when it trained, else 1 with `report`
    written."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    from mlops_assets.lib.models.data_parallel import device_problem

    _stop_with_parent()
    job = _job_from_pipes()
    problem = device_problem(job.settings["device"], processes)
    if problem:
        _write_report(report, problem)
        return 1
    # torch threads per worker: the cores shared out among the workers (torchrun alone would give each one thread),
    # unless the operator chose. The weights are bit-identical for the same seed, processes and threads per worker.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // processes)))
    arguments = [
        "--standalone",  # one machine: a rendezvous on a free local port
        f"--nproc-per-node={processes}",
        "--max-restarts=0",  # a failed worker fails the training; the Dagster run decides about retries
        "--module",
        MODULE,
        WORKER,
    ]
    try:
        torchrun(arguments)
    except ChildFailedError as error:
        _write_report(report, describe_failure(error, processes))
        return 1
    return 0


def train_replica(job: DataParallelJob, rank: int, local_rank: int) -> None:
    """Train this worker's replica; rank 0 streams the epochs through Pipes and writes the package."""
    import torch
    import torch.distributed as dist

    from mlops_assets.lib.errors import PluginError
    from mlops_assets.lib.models.data_parallel import backend_for, replica_device
    from mlops_assets.lib.models.plugins import resolve_plugin
    from mlops_assets.lib.models.training import epoch_summary, fit_model, save_trained_model

    if not resolve_plugin(job.plugin).data_parallel:
        raise PluginError(f"Model plug-in {job.plugin!r} trains in one process only; set processes to 1.")
    device = replica_device(job.settings["device"], local_rank)
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)  # this process's GPU is the default one: NCCL's own buffers go there too
    dist.init_process_group(backend, device_id=torch.device(device) if backend == "nccl" else None)
    try:
        settings, data = job.train_settings(device), job.validated_dataset()
        if rank != 0:
            fit_model(data, job.plugin, job.params, settings)
            return
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            pipes.log.info(f"Training data-parallel: {job.processes} processes ({backend}), rank 0 on {device}")
            fitted = fit_model(
                data,
                job.plugin,
                job.params,
                settings,
                lambda epoch: pipes.log.info(epoch_summary(epoch, settings.epochs)),
            )
            model = save_trained_model(
                fitted, data, job.params, settings, Path(job.destination), job.version, job.processes
            )
            pipes.log.info(f"Rank 0 wrote the model package (weights {model.weights_sha256[:12]})")
    finally:
        dist.destroy_process_group()


def worker() -> None:
    """One torchrun worker (torchrun sets RANK and LOCAL_RANK); an exception goes to torchrun's error file."""
    from torch.distributed.elastic.multiprocessing.errors import record

    def train() -> None:
        train_replica(_job_from_pipes(), int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]))

    record(train)()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    launcher = commands.add_parser(LAUNCH, help="run the Pipes context's training job under torchrun")
    launcher.add_argument("--processes", type=int, required=True)
    launcher.add_argument("--report", type=Path, required=True)
    commands.add_parser(WORKER, help="one worker (started by torchrun)")
    arguments = parser.parse_args(argv)
    if arguments.command == LAUNCH:
        return launch(arguments.processes, arguments.report)
    worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
