"""The database the importing tests write into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campaigns.store.db import make_engine, upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    upgrade(engine)
    yield engine
    engine.dispose()
