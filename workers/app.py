"""Entry module for Dramatiq's own CLI: ``dramatiq workers.app``.

Reads the config file named by ``NURTURE_CONFIG`` (default ``config.toml``), masks the
process's logs (:mod:`campaigns.customers.masking`), builds the broker and declares the actors.
Database and channel connections are opened lazily in each worker process.
"""

from __future__ import annotations

import os

import dramatiq

from campaigns.customers.masking import install_masking, secrets_from_config
from campaigns.project.loading import load_config
from workers.channels.registry import quiet_request_logs
from workers.jobs.actors import declare_actors
from workers.jobs.broker import make_broker
from workers.jobs.runtime import LazyRuntime

_config_path = os.environ.get("NURTURE_CONFIG", "config.toml")
_config = load_config(_config_path)
# Dramatiq imports this module in each worker process after configuring that process's
# logging (at INFO): from here on no log line of the process carries an address or a
# secret, and no request URL is logged at all.
install_masking(secrets=secrets_from_config(_config))
quiet_request_logs()
broker = make_broker(_config.broker)
dramatiq.set_broker(broker)
actors = declare_actors(broker, LazyRuntime(config_path=_config_path), queue=_config.broker.queue)
