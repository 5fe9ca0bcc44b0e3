"""The CDNOW purchase logs of the BG/NBD and Gamma-Gamma papers, for the prediction tests.

Fader, Hardie & Lee fitted their models on a 1/10th sample of the customers who first
bought at CDNOW in the first quarter of 1997: 2,357 customers and their purchases to the
end of June 1998 (``CDNOW_sample.txt``: master id, sample id, date, CDs, dollars). The
file is not copied into this repository: the wheel of lifetimes (MIT; the package these
papers' figures are usually reproduced with) carries it, and ``make install`` downloads
that wheel into ``.venv/fixtures`` without installing it (Makefile ``CDNOW_WHEEL``); the
file is read straight from the wheel. Missing, the tests that need it skip locally and
fail under CI (as a missing server does).
"""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tests.conftest import missing_service

#: Where ``make install`` puts the downloaded wheel.
FIXTURES = Path(sys.prefix) / "fixtures"
WHEEL = "Lifetimes-0.11.3-py3-none-any.whl"
SAMPLE = "lifetimes/datasets/CDNOW_sample.txt"


@dataclass(frozen=True)
class Purchase:
    """One line of the log."""

    customer: str
    day: date
    cds: int
    dollars: float


def cdnow_sample() -> list[Purchase]:
    """Every line of ``CDNOW_sample.txt`` (6,919 purchases of 2,357 customers)."""
    wheel = FIXTURES / WHEEL
    if not wheel.exists():
        missing_service(f"the CDNOW sample is read from {wheel}, which `make install` downloads "
                        f"(pip download --no-deps Lifetimes==0.11.3 -d {FIXTURES})")
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(SAMPLE).decode("ascii")
    purchases = []
    for line in text.splitlines():
        if line.strip():
            _, customer, day, cds, dollars = line.split()
            purchases.append(Purchase(customer=customer, day=date(int(day[:4]), int(day[4:6]), int(day[6:])),
                                      cds=int(cds), dollars=float(dollars)))
    return purchases


def write_import_files(directory: Path, purchases: list[Purchase]) -> tuple[Path, Path]:
    """``customers.csv`` and ``orders.csv`` for ``nurture import`` (one order per line of
    the log, at midnight UTC of its day)."""
    customers = directory / "customers.csv"
    orders = directory / "orders.csv"
    ids = sorted({p.customer for p in purchases})
    customers.write_text("customer_id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    orders.write_text("order_id,customer_id,ordered_at,amount\n" + "".join(
        f"{p.customer}-{n},{p.customer},{p.day.isoformat()}T00:00:00+00:00,{p.dollars:.2f}\n"
        for n, p in enumerate(purchases)), encoding="utf-8")
    return customers, orders
