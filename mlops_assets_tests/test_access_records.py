import logging

import pytest

from mlops_assets.lib.serving.access_records import UVICORN_ACCESS, skip_dropped_access_records


@pytest.fixture
def access_logger():
    """uvicorn's access logger under a root logger set as BentoML's server logging sets it; both restored after."""
    root, access = logging.getLogger(), logging.getLogger(UVICORN_ACCESS)
    saved = (root.level, list(root.handlers), access.level, access.propagate, list(access.handlers))
    handler = logging.StreamHandler()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    access.setLevel(logging.NOTSET)
    access.propagate = True
    yield access
    root.removeHandler(handler)
    root.setLevel(saved[0])
    access.setLevel(saved[2])
    access.propagate = saved[3]
    access.handlers = saved[4]


def test_records_the_levels_drop_are_not_built(access_logger: logging.Logger) -> None:
    # uvicorn builds a record per response when the logger has a handler anywhere up its hierarchy.
    assert access_logger.hasHandlers()
    skip_dropped_access_records()
    assert not access_logger.hasHandlers()


def test_access_records_stay_when_info_is_enabled(access_logger: logging.Logger) -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # BentoML's debug logging
    skip_dropped_access_records()
    assert access_logger.hasHandlers()
    assert access_logger.propagate
