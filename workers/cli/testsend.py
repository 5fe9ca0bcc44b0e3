"""``nurture test-send``: one campaign message, sent for real to an address the marketer gives.

The row is written to the ledger first, marked as a test
(:mod:`campaigns.sending.testsends`), then sent by this process through the worker's own
send path (:func:`workers.jobs.delivery.deliver_batch`), whatever the broker: a test send
must not wait for, or depend on, a worker that may not be running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from campaigns.errors import NurtureError
from campaigns.sending.testsends import create_test_delivery, recorded_outcome
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    friendly_errors,
    load_app_config,
    parse_now,
)


@friendly_errors
def test_send(
    campaign: Annotated[str, typer.Argument(help="The campaign whose message to send.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="Where to send it: an email address, a phone number, "
                                    "an OpenID, as the channel expects.", show_default=False)],
    channel: Annotated[str, typer.Option("--channel", help="The channel to send it through (a name from "
                                         "config.toml).", show_default=False)],
    step: Annotated[int, typer.Option("--step", help="The campaign step (0 is the first).")] = 0,
    variant: Annotated[int | None, typer.Option("--variant", help="The A/B variant (0 is the first); default: "
                                                "the customer's own.", show_default=False)] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Render with this customer's data "
                                                 "(any identifier: `C000007`, `phone:+86...`); "
                                                 "default: a sample customer.",
                                                 show_default=False)] = None,
    now: Annotated[str | None, typer.Option("--now", help="Render as of this time (ISO 8601).",
                                            show_default=False)] = None,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Send one campaign message to an address of yours, through the real channel.

    The message is marked as a test in the delivery ledger: it is never counted in reports
    or frequency caps, never enrols anyone, and a bounce or opt-out of that address never
    suppresses the customer whose data rendered it. The exit code is 1 when the channel
    refused the message.
    """
    from workers.jobs.delivery import deliver_batch
    from workers.jobs.runtime import Runtime

    moment = parse_now(now)
    cfg = load_app_config(config)
    options = cfg.channels.get(channel)
    if options is not None and options.recipient == "email" and "@" not in to:
        raise NurtureError(f"{to!r} is not an email address, and channel {channel!r} sends email")
    engine = engine_for(cfg)
    test = create_test_delivery(engine, cfg, campaign=campaign, channel=channel, now=moment, step=step,
                                variant=variant, customer=customer)
    runtime = Runtime.from_config(cfg, engine=engine, clock=lambda: moment)
    try:
        deliver_batch(runtime, [test.id], test_to=to)
        outcome = recorded_outcome(engine, test.id)
    finally:
        runtime.close()
    if as_json:
        print(json.dumps({
            "campaign": test.campaign, "step": test.step, "variant": test.variant, "template": test.template,
            "channel": test.channel, "to": to, "customer": test.customer, "sample_customer": test.sample,
            "send_key": test.send_key, "status": outcome.status, "error": outcome.last_error,
            "provider_message_id": outcome.provider_message_id,
        }))
    else:
        who = f"sample customer {test.customer}" if test.sample else f"customer {test.customer}"
        variant_text = f", variant {test.variant}" if test.variant is not None else ""
        console.print(f"test send of [bold]{test.campaign}[/] step {test.step}{variant_text} "
                      f"({escape(test.template)}), rendered for {escape(who)}", highlight=False)
        if outcome.status == "sent":
            console.print(f"[green]sent[/] to {escape(to)} via {escape(channel)} (send key {test.send_key})",
                          highlight=False)
        else:
            console.print(f"[bold red]{outcome.status}[/] to {escape(to)} via {escape(channel)}: "
                          f"{escape(outcome.last_error or '')}", highlight=False)
    if outcome.status != "sent":
        raise typer.Exit(1)
