"""Resources the code location binds for good: run config cannot change where artifacts, outputs or the registry live.

A ConfigurableResource bound with values still takes those fields from run config at launch (the bound values are
only defaults), and Dagster's default IO manager takes `base_dir` the same way. These definitions have an empty
config schema instead, so a launch that sets any of their fields is a config error before any step runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, TypeVar

import dagster as dg

FIXED_NOTE = "Fixed by the code location; run config cannot change it."

Resource = TypeVar("Resource", bound=dg.ConfigurableResource)


def fixed_resource(resource: dg.ConfigurableResource, description: str) -> dg.ResourceDefinition:
    """`resource` exactly as bound here (its setup and teardown still run), with no fields open to run config."""

    @dg.resource(config_schema={}, description=f"{description} {FIXED_NOTE}")
    def _fixed(context: dg.InitResourceContext) -> Iterator[dg.ConfigurableResource]:
        with _initialized(resource, context.instance) as initialized:
            yield initialized

    return _fixed


@dg.io_manager(
    config_schema={},
    description=f"Step outputs pickled per run under the Dagster instance's storage directory. {FIXED_NOTE}",
)
def instance_storage_io_manager(context: dg.InitResourceContext) -> dg.IOManager:
    """Asset values pickled per run (run_outputs.RunOutputsIOManager) on the instance's storage directory."""
    from mlops_assets.resources.run_outputs import RunOutputsIOManager

    return RunOutputsIOManager(context.instance.storage_directory(), context.instance)


class IOManagerSource(Protocol):
    """A resource holding an IO manager's settings, which makes the IO manager for a run's instance."""

    def io_manager(self, instance: dg.DagsterInstance) -> dg.IOManager: ...


def fixed_io_manager(source: dg.ConfigurableResource, description: str) -> dg.IOManagerDefinition:
    """The IO manager `source` (an IOManagerSource) makes, its settings exactly as bound here (environment
    variables resolved when a run starts), with no fields open to run config."""

    @dg.io_manager(config_schema={}, description=f"{description} {FIXED_NOTE}")
    def _fixed(context: dg.InitResourceContext) -> Iterator[dg.IOManager]:
        with _initialized(source, context.instance) as initialized:
            yield initialized.io_manager(context.instance)

    return _fixed


@contextlib.contextmanager
def _initialized(resource: Resource, instance: dg.DagsterInstance) -> Iterator[Resource]:
    """`resource` set up (and torn down after) as `process_config_and_initialize_cm()` does, on the run's instance.

    That method builds its context without an instance, so Dagster creates an ephemeral one (in-memory storage and
    its schema migrations, about 0.1 s) for every fixed resource of every run; a rebuild runs several of each.
    """
    # dagster is pinned exactly: these are the steps of ConfigurableResource.process_config_and_initialize_cm.
    from dagster._config.post_process import post_process_config

    config = post_process_config(resource._config_schema.config_type, resource._convert_to_config_dictionary())  # noqa: SLF001
    if not config.success:
        raise dg.DagsterInvalidConfigError("Errors while initializing resource", config.errors, config)
    with (
        dg.build_init_resource_context(config=config.value, instance=instance) as context,
        type(resource).from_resource_context_cm(context, nested_resources=resource.nested_resources) as initialized,
    ):
        yield initialized
