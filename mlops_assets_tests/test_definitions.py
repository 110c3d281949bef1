import re

import dagster as dg

from mlops_assets.definitions import build_definitions
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.validation.checks import BLOCKING_CHECKS, DESCRIPTIONS, DUPLICATES_CHECK
from mlops_assets.environments import KNOWN_ENVIRONMENTS

CHAIN = ["raw_images", "validated_images", "trained_model", "model_evaluation", "bento", "model_promotion"]
# Built with each model by the pipeline job; prediction_monitoring (one partition per day and deployment stage) has its
# own job.
MONITORING = ["monitoring_baseline", "prediction_monitoring"]
# Started by a person or by production's rollout, never by the pipeline job (a deployment starts servers).
DEPLOYMENT = ["deployment_staging", "deployment_production"]


def test_definitions_load_for_every_environment() -> None:
    for environment in KNOWN_ENVIRONMENTS:
        defs = build_definitions(environment)
        dg.Definitions.validate_loadable(defs)
        graph = defs.resolve_asset_graph()
        assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {*CHAIN, *MONITORING, *DEPLOYMENT}
        job = defs.resolve_job_def(PIPELINE_JOB_NAME)
        assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
            *CHAIN,
            "monitoring_baseline",
        }


def test_the_chain_is_wired_in_order() -> None:
    graph = build_definitions().resolve_asset_graph()
    for upstream, downstream in zip(CHAIN, CHAIN[1:], strict=False):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys


def test_every_asset_has_a_description_and_a_code_version() -> None:
    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and "\n" not in node.description.strip(), key
        # A hash of the code that determines the output (16 hex digits), not a hand-maintained label.
        assert re.fullmatch(r"[0-9a-f]{16}", node.code_version), (key, node.code_version)


def test_data_quality_checks_are_blocking_except_the_duplicates_warning() -> None:
    defs = build_definitions()
    specs = {
        spec.name: spec
        for checks in defs.asset_checks
        for spec in checks.check_specs
        if spec.asset_key == dg.AssetKey("validated_images")
    }
    assert set(specs) == set(DESCRIPTIONS)
    assert {name for name, spec in specs.items() if spec.blocking} == BLOCKING_CHECKS
    assert not specs[DUPLICATES_CHECK].blocking
