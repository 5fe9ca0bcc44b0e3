"""Entry point for ``nurture serve --workers N``: one receiver app per uvicorn process.

uvicorn starts several processes only from an import string, so each process builds its
own app here from the config file named by ``NURTURE_CONFIG`` (the CLI sets it), with
its own engine and broker connection, and masks its own logs.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from campaigns.config import load_config
from campaigns.masking import install_masking, secrets_from_config
from workers.broker import make_broker
from workers.channels.registry import quiet_request_logs
from workers.receiver import create_app


def create() -> Starlette:
    """The receiver app of this process (uvicorn ``--factory``)."""
    config = load_config(os.environ.get("NURTURE_CONFIG", "config.toml"))
    install_masking(secrets=secrets_from_config(config))
    quiet_request_logs()
    return create_app(config, broker=make_broker(config.broker))
