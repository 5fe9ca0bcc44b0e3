"""Which customer holds an identifier: the one place references become row ids.

Set based: :func:`holders` answers for any number of identifiers in one statement
(:mod:`campaigns.store.bulk`). A customer row written without identifiers (by an older version
or by hand) is still found by its ``external_id`` (:func:`resolve_reference`).

Commands that change a customer (``nurture consent``, ``forget``, ``test-send``) resolve
with :func:`resolve_unique`, which refuses a bare value naming two customers instead of
picking one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.identifiers import Identifier, parse_reference
from campaigns.errors import AmbiguousCustomerError
from campaigns.store.bulk import select_keyed
from campaigns.store.models import Customer, CustomerIdentifier


def holders(conn: Connection, identifiers: Iterable[Identifier]) -> dict[Identifier, int]:
    """identifier -> customer row id, for those of ``identifiers`` some customer holds: one
    statement for all kinds (:func:`~campaigns.store.bulk.select_keyed`)."""
    table = CustomerIdentifier.__table__
    rows = select_keyed(conn, table, [tuple(identifier) for identifier in identifiers], on=("kind", "value"),
                        columns=(table.c.kind, table.c.value, table.c.customer_id))
    return {Identifier(kind, value): pk for kind, value, pk in rows}


def resolve_reference(conn: Connection, reference: str, *, rules: IdentityConfig) -> int | None:
    """The row id of the customer ``reference`` names (any identifier, see
    :func:`~campaigns.customers.identity.identifiers.parse_reference`), or None.

    Candidates are tried most specific first; a bare value that is some customer's
    ``external_id`` wins over the same digits read as a phone.
    """
    candidates = parse_reference(reference, rules=rules)
    found = holders(conn, candidates)
    for candidate in candidates:
        if candidate in found:
            return found[candidate]
    if candidates and candidates[0].kind == "id":
        table = Customer.__table__
        return conn.execute(sa.select(table.c.id).where(table.c.external_id == candidates[0].value)).scalar()
    return None


def resolve_unique(conn: Connection, reference: str, *, rules: IdentityConfig) -> int | None:
    """The row id of the one customer ``reference`` names (read as :func:`resolve_reference`
    does), or None.

    Raises:
        AmbiguousCustomerError: the reference's candidates are held by different customers
            (``13800138000`` is one customer's id and another's phone).
    """
    candidates = parse_reference(reference, rules=rules)
    found = holders(conn, candidates)
    matches: dict[int, Identifier] = {}
    for candidate in candidates:
        pk = found.get(candidate)
        if pk is None and candidate.kind == "id":
            table = Customer.__table__
            pk = conn.execute(sa.select(table.c.id).where(table.c.external_id == candidate.value)).scalar()
        if pk is not None:
            matches.setdefault(pk, candidate)
    if len(matches) > 1:
        raise AmbiguousCustomerError(reference, matches=[str(identifier) for identifier in matches.values()])
    return next(iter(matches), None)


def resolve_references(
    conn: Connection, references: Iterable[str], *, rules: IdentityConfig, source: str | None = None
) -> dict[str, int]:
    """reference -> customer row id for each of ``references`` that names a customer, in
    a few statements whatever their number (orders and events of an import batch).

    A bare reference is the row's ``customer_id`` in ``source`` (``pos:88``) when a
    source is named, else an ``external_id``; ``kind:value`` names any identifier.
    """
    wanted: dict[str, list[Identifier]] = {}
    for reference in set(references):
        kind, colon, _ = reference.partition(":")
        if colon and kind in ("phone", "email", "openid", "unionid", "id"):
            wanted[reference] = parse_reference(reference, rules=rules)
        else:
            value = f"{source}:{reference.strip()}" if source else reference.strip()
            wanted[reference] = [Identifier("id", value)]
    found = holders(conn, (identifier for candidates in wanted.values() for identifier in candidates))
    resolved: dict[str, int] = {}
    # external id -> the references naming it: "C042" and "id:C042" are one id.
    unresolved_ids: dict[str, list[str]] = defaultdict(list)
    for reference, candidates in wanted.items():
        hit = next((found[c] for c in candidates if c in found), None)
        if hit is not None:
            resolved[reference] = hit
        elif candidates and candidates[0].kind == "id":
            unresolved_ids[candidates[0].value].append(reference)
    if unresolved_ids:
        # Rows written without identifiers are still found by their external_id.
        table = Customer.__table__
        for external_id, pk in select_keyed(conn, table, [(value,) for value in sorted(unresolved_ids)],
                                            on=("external_id",), columns=(table.c.external_id, table.c.id)):
            resolved.update(dict.fromkeys(unresolved_ids[external_id], pk))
    return resolved


__all__ = ["holders", "resolve_reference", "resolve_references", "resolve_unique"]
