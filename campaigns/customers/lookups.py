"""Point look-ups commands make before they act: a customer's row by any identifier.

(``nurture forget`` checks the customer exists before asking for confirmation;
``nurture consent`` records against the row id.) A reference is read as ``nurture
customer ID`` reads it (``C000007``, ``pos:88``, ``phone:+86 138...``, ``email:a@b.cn``,
``unionid:...``; :func:`~campaigns.customers.identity.identifiers.parse_reference`), so the
record a merge folded into its survivor still finds the survivor.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.lookup import resolve_unique


def customer_row_id(engine: Engine, reference: str, *, rules: IdentityConfig | None = None) -> int | None:
    """The row id of the customer ``reference`` names, or None.

    ``rules`` are the configured ``[identity]`` rules (``cfg.identity``: the default phone
    region, the dotless email domains); the defaults when not given.

    Raises:
        AmbiguousCustomerError: ``reference`` names two customers (a bare value that is one's
            id and another's phone); acting on a guess could change the wrong person.
    """
    with engine.connect() as conn:
        return resolve_unique(conn, reference, rules=rules or IdentityConfig())
