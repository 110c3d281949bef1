"""Deployment progress reaches whoever listens (the deployment assets forward it to Dagster's logger), and only
while they listen."""

from mlops_assets.lib.deploy.progress import LOGGER, reporting_to, step


def test_steps_reach_the_sink_only_inside_the_block_and_the_logger_is_left_as_it_was() -> None:
    seen: list[str] = []
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    step("before")
    with reporting_to(seen.append):
        step("staging: starting v2")
        step("staging: main URL -> v2")
    step("after")
    assert seen == ["staging: starting v2", "staging: main URL -> v2"]
    assert (LOGGER.level, LOGGER.handlers) == (level, handlers)
