"""Entry module for Dramatiq's own CLI: ``dramatiq workers.app``.

Reads the config file named by ``NURTURE_CONFIG`` (default ``config.toml``), builds the
broker and declares the actors. Database and channel connections are opened lazily in
each worker process.
"""

from __future__ import annotations

import os

import dramatiq

from campaigns.config import load_config
from workers.actors import declare_actors
from workers.broker import make_broker
from workers.runtime import LazyRuntime

_config_path = os.environ.get("NURTURE_CONFIG", "config.toml")
_config = load_config(_config_path)
broker = make_broker(_config.broker)
dramatiq.set_broker(broker)
actors = declare_actors(broker, LazyRuntime(config_path=_config_path), queue=_config.broker.queue)
