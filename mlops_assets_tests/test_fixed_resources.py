"""Resources fixed by the code location: set up with their bound values on the run's own instance."""

from __future__ import annotations

import dagster as dg
import pytest

from mlops_assets.resources.fixed import fixed_io_manager, fixed_resource


class Inner(dg.ConfigurableResource):
    name: str


class Store(dg.ConfigurableResource):
    root: str
    inner: Inner

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        events.append(("setup", self.root, self.inner.name, context.instance))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        events.append(("teardown", self.root, self.inner.name, context.instance))


class OutputsSource(dg.ConfigurableResource):
    prefix: str

    def io_manager(self, instance: dg.DagsterInstance) -> dg.IOManager:
        return MemoryIOManager(self.prefix, instance)


class MemoryIOManager(dg.IOManager):
    def __init__(self, prefix: str, instance: dg.DagsterInstance) -> None:
        self.prefix, self.instance = prefix, instance

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        events.append(("output", self.prefix, obj, self.instance))

    def load_input(self, context: dg.InputContext) -> object:
        raise NotImplementedError


events: list[tuple] = []


@dg.asset
def stored(store: Store) -> str:
    return f"{store.root}/{store.inner.name}"


def _resources() -> dict:
    return {
        "store": fixed_resource(Store(root="/data", inner=Inner(name="models")), "The store."),
        "io_manager": fixed_io_manager(OutputsSource(prefix="runs"), "The outputs."),
    }


def test_a_fixed_resource_is_set_up_with_its_bound_values_on_the_runs_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    events.clear()
    with dg.DagsterInstance.ephemeral() as instance:
        created: list[object] = []

        def ephemeral(*args: object, **kwargs: object) -> None:
            # Any other instance is one Dagster makes for a resource context built without an instance.
            created.append(args)
            raise AssertionError("a second, ephemeral instance was created for the run")

        monkeypatch.setattr(dg.DagsterInstance, "ephemeral", ephemeral)
        result = dg.materialize([stored], resources=_resources(), instance=instance)

    assert result.success
    assert created == []
    assert events == [
        ("setup", "/data", "models", instance),
        ("output", "runs", "/data/models", instance),
        ("teardown", "/data", "models", instance),
    ]


def test_run_config_cannot_change_a_fixed_resource() -> None:
    with pytest.raises(dg.DagsterInvalidConfigError, match="root"):
        dg.materialize(
            [stored],
            resources=_resources(),
            run_config={"resources": {"store": {"config": {"root": "/elsewhere"}}}},
        )


@dg.asset
def rooted(store: Store) -> str:
    return store.root


def test_a_fixed_resource_reads_its_environment_variables_when_each_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = {"store": fixed_resource(Store(root=dg.EnvVar("STORE_ROOT"), inner=Inner(name="m")), "The store.")}
    roots = []
    for root in ("/first", "/second"):
        monkeypatch.setenv("STORE_ROOT", root)
        result = dg.materialize([rooted], resources=resources)
        roots.append(result.output_for_node("rooted"))
    assert roots == ["/first", "/second"]

    monkeypatch.delenv("STORE_ROOT")
    with pytest.raises(dg.DagsterInvalidConfigError, match='environment variable "STORE_ROOT" which is not set'):
        dg.materialize([rooted], resources=resources)
