"""Point look-ups commands make before they act: a customer's row by its external id.

(``nurture forget`` checks the customer exists before asking for confirmation;
``nurture consent`` records against the row id.)
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.store.models import Customer


def customer_row_id(engine: Engine, external_id: str) -> int | None:
    """The row id of the customer imported with this ``customer_id``, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(Customer.id).where(Customer.external_id == external_id)).scalar()
