"""Secret values: reading one from the variable a config key names, telling a secret from
the name of the variable that holds it, and the webhook signing secret's one accepted form.

Secrets never appear in ``config.toml``: a ``*_env`` key names an environment variable.
Someone in a hurry pastes the secret itself there instead; :func:`looks_like_secret_value`
spots that so the error can say so *without echoing it*.

Webhook requests are signed as Standard Webhooks specifies, and only ``whsec_<base64>``
secrets are accepted: the official ``standardwebhooks`` library base64-decodes every
string secret, so a plain passphrase keyed as raw bytes on our side would make a receiver
using that library reject every request. :func:`webhook_signing_key` decodes exactly as the
library does (``whsec_`` stripped, missing padding tolerated).
"""

from __future__ import annotations

import base64
import binascii
import os
import re

#: What an environment variable name looks like (POSIX: letters, digits, underscore).
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Prefixes of well-known secret formats (Standard Webhooks, Stripe, GitHub, Slack, AWS).
_SECRET_PREFIXES = ("whsec_", "sk_", "pk_", "rk_", "ghp_", "github_pat_", "xox", "AKIA")

#: Shortest decoded webhook secret accepted (Standard Webhooks: 24 to 64 bytes).
MIN_WEBHOOK_SECRET_BYTES = 24

#: A shell command that prints a fresh ``whsec_`` secret.
MAKE_WEBHOOK_SECRET = (
    "python -c \"import secrets,base64;"
    "print('whsec_'+base64.b64encode(secrets.token_bytes(32)).decode())\""
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def looks_like_secret_value(name: str) -> bool:
    """True when ``name``, written where an environment variable's name belongs, looks
    like a secret value instead (not a valid variable name, a known secret prefix, or a
    long mix of lower case and digits such as a token)."""
    if not _ENV_NAME.fullmatch(name):
        return True
    if name.startswith(_SECRET_PREFIXES):
        return True
    return len(name) >= 24 and any(c.islower() for c in name) and sum(c.isdigit() for c in name) >= 4


def webhook_signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret, decoded as ``standardwebhooks`` does.

    Raises:
        ValueError: not a ``whsec_`` secret, not base64, or shorter than
            :data:`MIN_WEBHOOK_SECRET_BYTES`; the message never contains the secret.
    """
    how = f"make one with: {MAKE_WEBHOOK_SECRET}"
    if not secret.startswith("whsec_"):
        return _refuse(f"the webhook secret must be a Standard Webhooks secret, 'whsec_' followed by base64; {how}")
    encoded = secret[len("whsec_"):]
    if not _BASE64.fullmatch(encoded):
        return _refuse(f"the webhook secret is not 'whsec_' followed by base64; {how}")
    try:
        key = base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        return _refuse(f"the webhook secret is not 'whsec_' followed by base64; {how}")
    if len(key) < MIN_WEBHOOK_SECRET_BYTES:
        return _refuse(f"the webhook secret decodes to {len(key)} bytes, fewer than "
                       f"{MIN_WEBHOOK_SECRET_BYTES}; {how}")
    return key


def _refuse(message: str) -> bytes:
    raise ValueError(message)


def webhook_channel_key(secret_env: str | None, secret: str | None) -> bytes:
    """The signing key of a webhook channel whose ``secret_env`` names a variable holding
    ``secret``: the one judgement ``nurture check`` reports and the channel halts on.

    Raises:
        ValueError: no ``secret_env``, the variable unset or empty, or its value not a
            usable ``whsec_`` secret; the message says how to fix it, never the secret.
    """
    how = f"make one with: {MAKE_WEBHOOK_SECRET}"
    if not secret_env:
        return _refuse("webhook requests are always signed: set secret_env to the name of an environment "
                       f"variable holding a whsec_ secret ({how})")
    if not secret:
        return _refuse(f"environment variable {secret_env} is not set (or empty): sends through this channel "
                       f"halt until it holds a whsec_ secret ({how})")
    try:
        return webhook_signing_key(secret)
    except ValueError as exc:
        return _refuse(f"environment variable {secret_env}: {exc}")


def pasted_secret_issues(raw: object, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """``(key_path, message)`` for every ``*_env`` key of the raw TOML data whose value looks
    like a secret rather than a variable name; the message names the key, never the value."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    pending: list[tuple[object, tuple[str | int, ...]]] = [(raw, path)]
    while pending:
        node, where = pending.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(value, str) and value \
                        and looks_like_secret_value(value):
                    found.append(((*where, key), (
                        f"{key} must name an environment variable, but its value looks like a secret "
                        "itself (not shown): put the secret in an environment variable, e.g. "
                        f"export HOOK_SECRET=..., and write {key} = \"HOOK_SECRET\"")))
                else:
                    pending.append((value, (*where, key)))
        elif isinstance(node, list):
            pending.extend((item, (*where, index)) for index, item in enumerate(node))
    return found


def read_secret(env_name: str | None) -> str | None:
    """The value of the environment variable ``env_name`` (None when unnamed or unset)."""
    if not env_name:
        return None
    return os.environ.get(env_name) or None
