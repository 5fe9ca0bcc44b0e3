"""The uvicorn factory of ``nurture serve --workers N``: one app per uvicorn process.

uvicorn starts several processes only from an import string
(``workers.http.serve:create``, ``workers.http.serve:http_protocol``), so each process
builds its own app here (:func:`workers.http.app.create_app`) from the config file named
by ``NURTURE_CONFIG`` (the CLI sets it), with its own engine and broker connection, and
masks its own logs. A single-process ``nurture serve`` builds its app directly.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from starlette.applications import Starlette

from campaigns.customers.masking import install_masking, secrets_from_config
from campaigns.project.loading import load_config
from workers.channels.registry import quiet_request_logs
from workers.http.app import create_app
from workers.http.server_limits import install_log_limits, uvicorn_options
from workers.jobs.broker import make_broker


def create() -> Starlette:
    """The receiver app of this process (uvicorn ``--factory``)."""
    config = load_config(os.environ.get("NURTURE_CONFIG", "config.toml"))
    install_masking(secrets=secrets_from_config(config))
    install_log_limits()
    quiet_request_logs()
    return create_app(config, broker=make_broker(config.broker))


@functools.cache
def _protocol_class() -> Any:
    """The guarded protocol class for this process's config (read once)."""
    config = load_config(os.environ.get("NURTURE_CONFIG", "config.toml"))
    return uvicorn_options(config.api)["http"]


def http_protocol(*args: Any, **kwargs: Any) -> asyncio.Protocol:
    """uvicorn's ``http=`` in each process: the guarded protocol with this config's
    ``[api]`` limits (workers.http.server_limits), built once per process."""
    protocol: asyncio.Protocol = _protocol_class()(*args, **kwargs)
    return protocol
