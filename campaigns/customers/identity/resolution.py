"""An import batch's rows to customers, set based: create, update, merge or review.

A customer import names its source (``--source pos``) and what to match on (``[identity.
sources.pos] match``, or ``--match``). Each row carries identifiers: its own id (``pos:88``,
always matched), and a phone, email, openid and unionid when given. Resolution of a batch
is a few statements whatever its size:

1. :func:`match_batch`: every identifier of the batch is looked up in ONE read; rows and the
   customers holding their identifiers are joined (union-find) by *strong* matches on the
   kinds the import matches on (:meth:`MatchPlan.joins`); rows of the batch sharing a strong
   identifier join each other. Each group is one person.
2. :func:`merge_groups`: a group holding two or more customers merges them into one
   survivor (:mod:`~campaigns.customers.identity.merging`), recorded with the reason
   ``import:<source>`` and the matched kinds as actor (``match:phone``).
3. The caller writes each group's fields to its customer (creating it when the group has
   none): :mod:`campaigns.customers.importing.upserts`.
4. :func:`attach_identifiers`: the rows' identifiers nobody holds are attached to their
   customer (``ON CONFLICT DO NOTHING RETURNING``), then those not inserted are read again.
   One a concurrent import gave another customer meanwhile is a strong match like any other
   and merges (race safe); a weak one (``email``), or a kind the import does not match on,
   held by another customer opens a review item
   (:func:`~campaigns.customers.identity.review.open_reviews`), never a merge.

A group's customer is therefore the same whatever the order of the imports and of the rows
in a file, as long as a phone's verification does not depend on which source came first.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from campaigns.config.identity import IdentityConfig
from campaigns.customers.identity.identifiers import Identifier, normalize
from campaigns.customers.identity.merging import choose_survivor, merge_customers
from campaigns.customers.identity.review import ReviewPair, open_reviews
from campaigns.errors import DataImportError
from campaigns.store.bulk import insert_rows, select_keyed, update_keyed
from campaigns.store.models import Customer, CustomerIdentifier

#: Kinds an import may match on (``--match``); its own id is always matched.
MATCH_KINDS: tuple[str, ...] = ("phone", "email", "openid", "unionid")
#: Import row column -> identifier kind (besides ``customer_id``, the row's own id).
IDENTIFIER_COLUMNS: dict[str, str] = {
    "phone": "phone", "email": "email", "wechat_openid": "openid", "unionid": "unionid",
}


@dataclass(frozen=True, kw_only=True)
class MatchPlan:
    """How one import matches its rows: its source, the kinds it matches on, the rules."""

    rules: IdentityConfig
    source: str | None = None
    match: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, rules: IdentityConfig, source: str | None = None,
           match: Iterable[str] | None = None) -> MatchPlan:
        """The plan of an import from ``source``: ``match`` overrides the source's
        configured kinds (None keeps them). A source not in ``[identity.sources]`` is
        allowed: it namespaces the rows' ids and matches only on ``match``.

        Raises :class:`DataImportError` for an unknown kind or source name.
        """
        if source is not None and not (0 < len(source) <= 32 and all(ch.isalnum() or ch in "_-" for ch in source)):
            raise DataImportError(f"source {source!r}: use 1-32 letters, digits, '_' or '-'")
        kinds = tuple(dict.fromkeys(match)) if match is not None else tuple(rules.source(source).match)
        unknown = [kind for kind in kinds if kind not in MATCH_KINDS]
        if unknown:
            raise DataImportError(f"cannot match on {', '.join(map(repr, unknown))}: use {', '.join(MATCH_KINDS)}")
        return cls(rules=rules, source=source, match=kinds)

    @functools.cached_property  # asked for every identifier of every row
    def verified(self) -> tuple[str, ...]:
        """The kinds this source has verified (``[identity.sources.<name>] verified``)."""
        return tuple(self.rules.source(self.source).verified)

    @property
    def reason(self) -> str:
        """Why a merge of this import happened: ``import:<source>``, or ``import``."""
        return f"import:{self.source}" if self.source else "import"

    def strong(self, kind: str, *, stored_verified: bool = False) -> bool:
        """Whether a match on ``kind`` may merge: ids, unionids and openids always; a phone
        when this source or the stored identifier has it verified (or verification is not
        required); never a kind listed in ``[identity] weak``."""
        if kind == "id":
            return True
        if kind in self.rules.weak:
            return False
        if kind == "phone" and self.rules.require_verified_phone:
            return "phone" in self.verified or stored_verified
        return True

    def joins(self, kind: str, *, stored_verified: bool = False) -> bool:
        """Whether two holders of one ``kind`` identifier are one person in this import."""
        return kind == "id" or (kind in self.match and self.strong(kind, stored_verified=stored_verified))


@dataclass(frozen=True, slots=True)
class RowIdentity:
    """The identifiers of one import row: its own id first."""

    own: Identifier
    others: tuple[Identifier, ...] = ()

    @property
    def all(self) -> tuple[Identifier, ...]:
        """Own id and the others."""
        return (self.own, *self.others)


def row_identity(customer_id: str, columns: Mapping[str, Any], *, plan: MatchPlan) -> RowIdentity:
    """The normalised identifiers of a row with ``customer_id`` and ``columns`` (its phone,
    email, wechat_openid, unionid); a value that is no valid identifier is left out."""
    own = normalize("id", customer_id, rules=plan.rules, source=plan.source)
    if own is None:
        raise ValueError("a row needs a customer_id")
    others = []
    for column, kind in IDENTIFIER_COLUMNS.items():
        found = normalize(kind, columns.get(column), rules=plan.rules, source=plan.source)
        if found is not None and found not in others:
            others.append(found)
    return RowIdentity(own, tuple(others))


class Holding(NamedTuple):
    """Who holds an identifier, and whether it was stored as verified (a named tuple: one
    per identifier of every import row)."""

    customer_id: int
    verified: bool
    #: False when found only as a customer's ``external_id`` (no identifier row yet).
    listed: bool = True


def holdings(conn: Connection, identifiers: Iterable[Identifier]) -> dict[Identifier, Holding]:
    """identifier -> its holder, for those of ``identifiers`` someone holds: one statement
    for all kinds (:func:`~campaigns.store.bulk.select_keyed`). An ``id`` nobody holds is
    still found as a customer's ``external_id`` (a row written without identifiers)."""
    wanted = list(dict.fromkeys((identifier.kind, identifier.value) for identifier in identifiers))
    table = CustomerIdentifier.__table__
    found: dict[Identifier, Holding] = {
        Identifier(kind, value): Holding(pk, bool(verified))
        for kind, value, pk, verified in select_keyed(
            conn, table, wanted, on=("kind", "value"),
            columns=(table.c.kind, table.c.value, table.c.customer_id, table.c.verified))
    }
    missing = [(value,) for kind, value in wanted if kind == "id" and Identifier("id", value) not in found]
    customers = Customer.__table__
    found.update({Identifier("id", external_id): Holding(pk, False, listed=False)
                  for external_id, pk in select_keyed(conn, customers, missing, on=("external_id",),
                                                      columns=(customers.c.external_id, customers.c.id))})
    return found


class _UnionFind:
    """Disjoint sets of hashable nodes, remembering the kinds that joined each set."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}
        self.kinds: dict[Any, set[str]] = defaultdict(set)

    def find(self, node: Any) -> Any:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: Any, b: Any, kind: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The lower root wins, so the sets do not depend on the order of unions.
            root_a, root_b = sorted((root_a, root_b))
            self.parent[root_b] = root_a
            self.kinds[root_a] |= self.kinds.pop(root_b, set())
        self.kinds[root_a].add(kind)


@dataclass
class MatchGroup:
    """One person of a batch: its rows (batch positions, in order) and the customers
    already holding their identifiers, lowest row id first."""

    rows: list[int]
    customers: list[int]
    #: The kinds that joined them (the actor of a merge: ``match:phone``).
    kinds: set[str] = field(default_factory=set)

    @property
    def actor(self) -> str:
        """``match:<kinds>``: what made this group one person."""
        return "match:" + "+".join(sorted(self.kinds - {"id"}) or ["id"])


@dataclass
class BatchMatch:
    """The rows of a batch grouped into persons, and who held their identifiers."""

    rows: list[RowIdentity]
    groups: list[MatchGroup]
    held: dict[Identifier, Holding]
    #: batch position -> index in :attr:`groups`.
    group_of: list[int]


def match_batch(conn: Connection, rows: Sequence[RowIdentity], *, plan: MatchPlan) -> BatchMatch:
    """Group ``rows`` (distinct own ids) with the customers they strongly match: one read."""
    held = holdings(conn, (identifier for row in rows for identifier in row.all))
    sets = _UnionFind()
    first_row: dict[Identifier, int] = {}
    for index, row in enumerate(rows):
        sets.find(("r", index))
        for identifier in row.all:
            holding = held.get(identifier)
            if holding is not None and plan.joins(identifier.kind, stored_verified=holding.verified):
                sets.union(("r", index), ("c", holding.customer_id), identifier.kind)
            if plan.joins(identifier.kind):
                if identifier in first_row:
                    sets.union(("r", index), ("r", first_row[identifier]), identifier.kind)
                else:
                    first_row[identifier] = index
    by_root: dict[Any, MatchGroup] = {}
    for node in sorted(sets.parent):
        root = sets.find(node)
        group = by_root.setdefault(root, MatchGroup(rows=[], customers=[], kinds=sets.kinds.get(root, set())))
        (group.rows if node[0] == "r" else group.customers).append(node[1])
    groups = [group for group in by_root.values() if group.rows]
    group_of = [0] * len(rows)
    for number, group in enumerate(groups):
        group.rows.sort()
        group.customers.sort()
        for index in group.rows:
            group_of[index] = number
    return BatchMatch(rows=list(rows), groups=groups, held=held, group_of=group_of)


def merge_groups(conn: Connection, batch: BatchMatch, *, plan: MatchPlan, now: datetime) -> tuple[list[int | None], int]:
    """Merge the customers of each group into one survivor; returns each group's customer
    (None when the group has none yet: its rows create one) and how many merges ran."""
    targets: list[int | None] = []
    merges = 0
    for group in batch.groups:
        if not group.customers:
            targets.append(None)
            continue
        survivor = _merge(conn, group.customers, reason=plan.reason, actor=group.actor, now=now)
        merges += len(group.customers) - 1
        targets.append(survivor)
    return targets, merges


def _merge(conn: Connection, customers: Sequence[int], *, reason: str, actor: str, now: datetime) -> int:
    if len(customers) == 1:
        return customers[0]
    survivor = choose_survivor(conn, list(customers))
    for merged in sorted(set(customers) - {survivor}):
        merge_customers(conn, survivor_id=survivor, merged_id=merged, reason=reason, actor=actor, now=now)
    return survivor


@dataclass
class Attachment:
    """What attaching a batch's identifiers did: merges (a concurrent import gave one of
    them to another customer), review items opened, and where merged customers went."""

    merged: int = 0
    reviews_opened: int = 0
    moved_to: dict[int, int] = field(default_factory=dict)

    def customer(self, customer_id: int) -> int:
        """The customer ``customer_id`` is now (itself, or the survivor it merged into)."""
        while customer_id in self.moved_to:
            customer_id = self.moved_to[customer_id]
        return customer_id


def attach_identifiers(conn: Connection, batch: BatchMatch, row_customers: Sequence[int], *,
                       plan: MatchPlan, now: datetime) -> Attachment:
    """Give each row's customer (``row_customers``, by batch position) the row's identifiers
    nobody holds, refresh ``last_seen_at`` (and ``verified``) of those it holds, merge on a
    strong identifier found on another customer, and open review items for the rest."""
    identifiers = CustomerIdentifier.__table__
    new: dict[Identifier, dict[str, Any]] = {}
    for index, row in enumerate(batch.rows):
        for identifier in row.all:
            holding = batch.held.get(identifier)
            if (holding is None or not holding.listed) and identifier not in new:  # the first row keeps it
                new[identifier] = {
                    "customer_id": row_customers[index], "kind": identifier.kind, "value": identifier.value,
                    "source": plan.source, "verified": identifier.kind in plan.verified,
                    "first_seen_at": now, "last_seen_at": now,
                }
    inserted: set[Identifier] = set()
    if new:
        result = insert_rows(conn, identifiers, list(new.values()),
                             finish=lambda insert: insert.on_conflict_do_nothing(index_elements=["kind", "value"])
                             .execution_options(preserve_rowcount=True))  # else -1 for an INSERT
        # All inserted (the rule): each is its row's customer's. Else a concurrent import took
        # some meanwhile, and who holds which is read below with the rest.
        if result.rowcount == len(new):
            inserted = set(new)
    # Who holds each identifier now: those just inserted, their row's customer; the others
    # are read again (held before, perhaps merged away since; or given meanwhile to another
    # customer by a concurrent import).
    held = {identifier: Holding(new[identifier]["customer_id"], bool(new[identifier]["verified"]))
            for identifier in inserted}
    held.update(holdings(conn, (identifier for row in batch.rows for identifier in row.all
                                if identifier not in inserted)))
    sets = _UnionFind()
    reviews: list[ReviewPair] = []
    seen: set[tuple[str, str]] = set()
    verify: set[tuple[str, str]] = set()
    for index, row in enumerate(batch.rows):
        customer = row_customers[index]
        for identifier in row.all:
            holding = held.get(identifier)
            if holding is None:
                continue
            if holding.customer_id == customer:
                if identifier not in inserted:  # an identifier just inserted was seen now
                    seen.add((identifier.kind, identifier.value))
                if identifier.kind in plan.verified and not holding.verified:
                    verify.add((identifier.kind, identifier.value))
            elif plan.joins(identifier.kind, stored_verified=holding.verified):
                sets.union(customer, holding.customer_id, identifier.kind)
            else:
                reviews.append(ReviewPair(customer_id=customer, other_customer_id=holding.customer_id,
                                          kind=identifier.kind, value=identifier.value, source=plan.source))
    attachment = Attachment()
    members: dict[int, list[int]] = defaultdict(list)
    for node in sorted(sets.parent):
        members[sets.find(node)].append(node)
    for root, customers in sorted(members.items()):
        if len(customers) > 1:
            kinds = sets.kinds.get(root, set())
            actor = "match:" + "+".join(sorted(kinds - {"id"}) or ["id"])
            survivor = _merge(conn, customers, reason=plan.reason, actor=actor, now=now)
            attachment.merged += len(customers) - 1
            attachment.moved_to.update({customer: survivor for customer in customers if customer != survivor})

    update_keyed(conn, identifiers, sorted(seen), on=("kind", "value"), values={"last_seen_at": now})
    update_keyed(conn, identifiers, sorted(verify), on=("kind", "value"), values={"verified": True})
    pairs = [
        ReviewPair(customer_id=attachment.customer(pair.customer_id),
                   other_customer_id=attachment.customer(pair.other_customer_id),
                   kind=pair.kind, value=pair.value, source=pair.source)
        for pair in reviews
    ]
    attachment.reviews_opened = open_reviews(conn, pairs, now=now)
    return attachment


__all__ = [
    "IDENTIFIER_COLUMNS",
    "MATCH_KINDS",
    "Attachment",
    "BatchMatch",
    "Holding",
    "MatchGroup",
    "MatchPlan",
    "RowIdentity",
    "attach_identifiers",
    "holdings",
    "match_batch",
    "merge_groups",
    "row_identity",
]
