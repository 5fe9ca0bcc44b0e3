"""The ``nurture`` command line: the root Typer app and the console entry point :func:`main`.

The commands live in one module per group (:mod:`~workers.cli.setup`,
:mod:`~workers.cli.customers`, :mod:`~workers.cli.sending`, :mod:`~workers.cli.views`,
:mod:`~workers.cli.reports`, :mod:`~workers.cli.compliance`, :mod:`~workers.cli.demo`,
:mod:`~workers.cli.identity`, :mod:`~workers.cli.merges`, :mod:`~workers.cli.campaigns` ...) over :mod:`workers.cli.common`; this module only
registers them, so imports point one way (``nurture import coupons`` and ``coupon-redemptions``
are :mod:`~workers.cli.coupons`' commands, added to the import group here).
The order of registration is the order ``nurture --help`` lists them in.
"""

from __future__ import annotations

import logging
import os

import typer

from campaigns.customers.masking import install_masking
from workers.cli import (
    campaigns,
    compliance,
    coupons,
    customers,
    demo,
    feedback,
    identity,
    loyalty,
    merges,
    predict,
    preview,
    recommend,
    referrals,
    replies,
    reports,
    sending,
    setup,
    testsend,
    views,
)
from workers.cli.helptext import MARKUP_MODE, hide_flag_types

hide_flag_types()
app = typer.Typer(
    help="nurture: lifecycle marketing automation. Campaigns in config.toml, delivered by Dramatiq workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP_MODE,
)
app.add_typer(setup.db_app, name="db")
customers.import_app.command("redemptions")(loyalty.import_redemptions)
customers.import_app.command("coupons")(coupons.import_coupons)
customers.import_app.command("coupon-redemptions")(coupons.import_redemptions)
app.add_typer(customers.import_app, name="import")
app.command()(setup.check)
app.command()(sending.scheduler)
app.command()(customers.track)
app.command()(sending.serve)
app.command("run")(sending.run_campaign)
app.command()(sending.worker)
app.command()(customers.profiles)
app.command()(views.audience)
app.command()(preview.preview)
app.command()(sending.status)
app.command("campaigns")(campaigns.list_campaigns)
app.command()(campaigns.pause)
app.command()(campaigns.resume)
app.command()(campaigns.retry)
app.command()(customers.forget)
app.command()(demo.demo)
app.add_typer(compliance.suppress_app, name="suppress")
app.command()(compliance.consent)
app.command()(compliance.reply)
app.command()(replies.replies)
app.add_typer(replies.alerts_app, name="alerts")
reports.report_app.command("referrals")(referrals.report_referrals)
reports.report_app.command("feedback")(feedback.report_feedback)
app.add_typer(reports.report_app, name="report")
app.command()(views.segments)
views.customer_app.command("merge")(merges.merge)
views.customer_app.command("unmerge")(merges.unmerge)
views.customer_app.command("merges")(merges.merges)
app.add_typer(views.customer_app, name="customer")
app.add_typer(identity.identity_app, name="identity")
app.add_typer(referrals.referrals_app, name="referrals")
app.add_typer(loyalty.points_app, name="points")
app.add_typer(loyalty.loyalty_app, name="loyalty")
app.add_typer(recommend.recommend_app, name="recommend")
app.command()(predict.predict)
app.add_typer(feedback.feedback_app, name="feedback")
app.command("test-send")(testsend.test_send)
app.command("coupons")(coupons.coupons)


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=os.environ.get("NURTURE_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # No log line carries a full address or a secret, whichever handler writes it
    # (uvicorn's included); commands add the config's secrets when they load it.
    install_masking()
    from workers.channels.registry import quiet_request_logs

    quiet_request_logs()
    app()
