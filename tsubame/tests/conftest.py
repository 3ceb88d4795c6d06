"""Fixtures of the backup tests: instances of their own, run as production runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tsubame.tests.instance import BACKENDS, Instance, instances


@pytest.fixture(params=BACKENDS)
def make_instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable]:
    with instances(request.param, tmp_path) as make:
        yield make


@pytest.fixture
def populated(make_instance: Callable[[], Instance]) -> Instance:
    """An instance migrated and given servers with secrets and runs with output."""
    instance = make_instance()
    instance.manage("migrate", "--noinput")
    instance.act("populate")
    return instance
