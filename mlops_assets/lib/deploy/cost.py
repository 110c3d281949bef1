"""The estimated monthly cost of a stage's Cloud Run service, from the dated price table in the repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_assets.lib.deploy.validation import CloudRunSettings, memory_gib
from mlops_assets.lib.settings_validation import read_yaml

PRICE_TABLE = Path(__file__).resolve().parents[3] / "deployments" / "prices" / "cloud_run.yaml"
# A month of the plan: 30 days.
MONTH_S = 30 * 24 * 3600


@dataclass(frozen=True)
class CostPlan:
    """A month of one service: instance-seconds billed and what they cost (USD)."""

    instance_price_per_s: float
    always_on_s: float  # min instances, all month
    load_s: float  # instance-seconds the expected requests keep an instance busy beyond the min instances
    cpu: float
    memory: float
    gpu: float

    @property
    def total(self) -> float:
        return self.cpu + self.memory + self.gpu


def load_prices(path: Path = PRICE_TABLE) -> dict[str, Any]:
    """The price table (source, recorded date, region, per-second prices); raises ConfigError when unreadable."""
    return read_yaml(path)


def estimate(settings: CloudRunSettings, prices: dict[str, Any]) -> CostPlan:
    """Instance-based billing: min instances are billed all month; the expected load (requests x mean seconds,
    served one after another) adds instance time beyond what they cover, up to max_instances all month."""
    gpu_price = 0.0
    if settings.accelerator is not None:
        by_type = prices["gpu_per_second"].get(settings.accelerator)
        if by_type is None:
            raise ValueError(f"The price table {PRICE_TABLE} has no price for {settings.accelerator}; add it.")
        gpu_price = by_type[
            "zonal_redundancy_disabled" if settings.gpu_zonal_redundancy_disabled else "zonal_redundancy"
        ]
    memory = memory_gib(settings.memory)
    cpu_price = settings.cpu * prices["cpu_per_vcpu_second"]
    memory_price = memory * prices["memory_per_gib_second"]
    always_on = settings.min_instances * MONTH_S
    busy = settings.expected_requests_per_day * 30 * settings.mean_request_s
    load = min(max(0.0, busy - always_on), settings.max_instances * MONTH_S - always_on)
    seconds = always_on + load
    return CostPlan(
        cpu_price + memory_price + gpu_price,
        always_on,
        load,
        cpu_price * seconds,
        memory_price * seconds,
        gpu_price * seconds,
    )


def plan_text(stage_settings: Any, stage: str = "stage", prices_path: Path = PRICE_TABLE) -> str:
    """`mlops deploy STAGE --plan`: the configuration and its estimated monthly cost, with the price table's source,
    date and region. `stage_settings` is the stage's `deployments.<stage>` settings."""
    if stage_settings.target != "cloud_run":
        return f"{stage}: target {stage_settings.target}: served on this machine, no Cloud Run cost."
    settings = stage_settings.cloud_run  # checked when the environment file was loaded
    prices = load_prices(prices_path)
    plan = estimate(settings, prices)
    gpu = settings.accelerator or "no GPU"
    redundancy = "off" if settings.gpu_zonal_redundancy_disabled else "on"
    lines = [
        f"{stage}: Cloud Run service {settings.service} in {settings.region}",
        f"  per instance: {gpu}, {settings.cpu:g} vCPU, {settings.memory}, zonal redundancy {redundancy}: "
        f"${plan.instance_price_per_s * 3600:.4f}/hour",
        f"  instances: min {settings.min_instances}, max {settings.max_instances}; expected load "
        f"{settings.expected_requests_per_day:,} requests/day x {settings.mean_request_s:g} s",
        f"  instance-hours/month: {plan.always_on_s / 3600:,.1f} always on + {plan.load_s / 3600:,.1f} for the load",
        f"  estimated monthly cost: ${plan.total:,.2f} (GPU ${plan.gpu:,.2f}, CPU ${plan.cpu:,.2f}, "
        f"memory ${plan.memory:,.2f})",
        f"  prices: {prices['source']} as recorded {prices['recorded']} for {prices['region']} "
        f"({prices['currency']}, on-demand, before the free tier); an idle instance kept warm after the load is not "
        "counted",
    ]
    if settings.region not in prices["regions"]:
        lines.append(f"  note: {settings.region} is not a region the price table covers; prices there may differ")
    return "\n".join(lines)
