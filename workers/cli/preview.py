"""``nurture preview``: the exact message one customer would get from a campaign step now,
the channel it would go on and, when it would not go, why. Sends nothing, writes nothing.

Presentation only: the preview comes from :mod:`campaigns.sending.preview`, which runs the
audience, assignment, send-time policy and rendering code of the real send path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.panel import Panel
from rich.text import Text

from campaigns.config.channels import WebhookChannelConfig
from campaigns.config.options.twilio import TwilioConfig
from campaigns.config.schema import AppConfig
from campaigns.errors import NurtureError
from campaigns.sending.messages import OutboundMessage
from campaigns.sending.preview import MessagePreview, preview_message
from campaigns.sending.rendering import TemplateRenderer
from campaigns.sending.smssegments import sms_length
from workers.channels.sms.twilio import TwilioChannel
from workers.channels.webhook import WebhookChannel
from workers.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    friendly_errors,
    load_app_config,
    parse_now,
)
from workers.cli.tables import print_json, print_table, text, titled_table, when

#: Part names as a marketer reads them.
PART_TITLES = {"subject": "subject", "txt": "text", "html": "HTML", "sms": "SMS", "json": "JSON"}


@friendly_errors
def preview(
    campaign: Annotated[str, typer.Argument(help="Campaign name, as in config.toml.")],
    customer: Annotated[str, typer.Option("--customer", help="The customer, by any identifier: `C000007`, "
                                          "`phone:+8613800138000`, `email:a@b.cn`, ...",
                                          show_default=False)],
    step: Annotated[int, typer.Option("--step", help="Which step of the series, from 0.")] = 0,
    variant: Annotated[int | None, typer.Option(
        "--variant", help="Show this A/B variant (from 0) instead of the customer's own.", show_default=False)] = None,
    now: Annotated[str | None, typer.Option(
        "--now", help="Preview as of this time (ISO 8601), e.g. 2026-12-04T10:00+08:00.", show_default=False)] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also write the HTML part to this file, to open in a browser.", show_default=False)] = None,
    config: ConfigOption = Path("config.toml"),
    as_json: JsonOption = False,
) -> None:
    """Show the message a customer would get from a campaign now: every part, the channel
    and, if it would not go, why (audience, holdout, consent, suppression, quiet hours,
    send window, frequency cap). Sends nothing and writes nothing to the database.
    """
    moment = parse_now(now)
    cfg = load_app_config(config)
    result = preview_message(engine_for(cfg), cfg, TemplateRenderer.from_config(cfg.templates),
                             campaign=campaign, customer=customer, now=moment, step=step, variant=variant)
    if html is not None:
        _write_html(result, html)
    wire = as_sent(cfg, result)
    if as_json:
        print_json({**result.as_dict(), "as_sent": wire})
    else:
        _print(result, wire)
        if html is not None:
            console.print(f"HTML part written to {html}", highlight=False, markup=False)
    if result.render_error is not None:
        raise typer.Exit(1)


def as_sent(config: AppConfig, result: MessagePreview) -> dict[str, Any] | None:
    """What the chosen channel itself makes of the parts, for the channels that build their
    own body: the webhook's JSON body (a JSON object of the parts without a ``json`` part)
    and Twilio's SMS text (with the brand prefix and opt-out line it adds to marketing).
    None for the others: they send the parts as shown, or a provider-side template."""
    options = config.channels.get(result.channel or "")
    if options is None or result.render_error is not None or result.recipient is None:
        return None
    message = OutboundMessage(send_key=result.send_key, delivery_id=0, campaign=result.campaign, step=result.step,
                              channel=result.channel or "", recipient=result.recipient,
                              customer_external_id=result.customer, parts=result.parts,
                              metadata={"purpose": result.purpose})
    # The channels' own code, so the preview cannot drift from them; neither touches the
    # network before send().
    if isinstance(options, WebhookChannelConfig):
        hook = WebhookChannel(name=message.channel, options=options)
        try:
            return {"kind": "webhook", "body": json.loads(hook.body(message))}
        finally:
            hook.close()
    if isinstance(options, TwilioConfig):
        twilio = TwilioChannel(name=message.channel, options=options)
        try:
            text = twilio.text(message)
        finally:
            twilio.close()
        return {"kind": "twilio", "sms": {"text": text, **sms_length(text).as_dict()}}
    return None


def _write_html(result: MessagePreview, path: Path) -> None:
    if result.render_error is not None:
        return  # the error is the preview's result; there is no HTML to write
    if "html" not in result.parts:
        raise NurtureError(f"template {result.template} has no HTML part ({result.template}.html.j2): "
                           "nothing to write to --html")
    try:
        path.write_text(result.parts["html"], encoding="utf-8")
    except OSError as exc:
        raise NurtureError(f"cannot write {path}: {exc.strerror or exc}") from None


def _verdict(result: MessagePreview) -> Text:
    if result.render_error is not None:
        return Text.assemble(("would fail: ", "bold red"), f"render failed: {result.render_error}")
    if result.verdict == "send":
        return Text.assemble(("would send now", "bold green"), f" on {result.channel} to {result.recipient}")
    lines = Text()
    if result.verdict == "wait":
        until = max(b.until for b in result.blockers if b.until is not None)
        lines.append(f"would wait until {until:%Y-%m-%d %H:%M} UTC", "bold yellow")
        lines.append(f" on {result.channel} to {result.recipient}")
    else:
        lines.append("would not send", "bold red")
    for blocker in result.blockers:
        until = f" (until {blocker.until:%Y-%m-%d %H:%M} UTC)" if blocker.until else ""
        lines.append(f"\n  {blocker.code}: {blocker.message}{until}")
    return lines


def _print(result: MessagePreview, wire: dict[str, Any] | None) -> None:
    variant = "" if result.variant is None else f", variant {result.variant} ({result.variant_source})"
    console.print(Text(f"{result.campaign} step {result.step} (of {_steps(result.steps)}): template {result.template}"
                       f"{variant}, for customer {result.customer} at {result.now:%Y-%m-%d %H:%M} UTC "
                       f"({result.now.astimezone(ZoneInfo(result.zone)):%H:%M} {result.zone}, their time)"),
                  style="bold")
    console.print(_verdict(result))
    print_table(titled_table("channels, in the campaign's order", ["channel", "to", "address", "usable"],
                             [[c.channel, c.recipient, text(c.address),
                               "yes" if c.problem is None else c.problem.replace("_", " ")]
                              for c in result.channels]))
    if result.planned:
        print_table(titled_table("already in the ledger", ["send key", "status", "channel", "due", "sent", "error"],
                                 [[p["send_key"], p["status"], p["channel"], when(p["due_at"]), when(p["sent_at"]),
                                   text(p["last_error"])] for p in result.planned]))
    if result.recommendations:
        print_table(titled_table("recommended products shown (recorded when sent)", ["#", "sku", "category", "reason"],
                                 [[str(p["position"]), p["sku"], text(p["category"]), p["reason"]]
                                  for p in result.recommendations]))
    for part, body in result.parts.items():
        title = PART_TITLES.get(part, part)
        if part == "sms":
            title = _sms_title(result)
        elif part == "json":
            body = json.dumps(result.json_body, indent=2, ensure_ascii=False)
        # soft_wrap=False: the console's soft wrap would crop a long line at the panel's
        # edge, hiding part of the message; here every line wraps inside the panel.
        console.print(Panel(Text(body.rstrip("\n")), title=title, title_align="left", expand=False),
                      soft_wrap=False)
    if "sms" not in result.parts and "txt" in result.parts:
        console.print(Text(f"as SMS (the text part): {_sms_title(result)}"))
    if wire is not None and wire["kind"] == "webhook":
        console.print(Panel(Text(json.dumps(wire["body"], indent=2, ensure_ascii=False)), expand=False,
                            title=f"as {result.channel} posts it (webhook body)", title_align="left"),
                      soft_wrap=False)
    elif wire is not None:
        sms = wire["sms"]
        console.print(Panel(Text(sms["text"]), expand=False, title_align="left",
                            title=f"as {result.channel} sends it (Twilio): {_length(sms)}"), soft_wrap=False)


def _steps(count: int) -> str:
    return "1 step" if count == 1 else f"{count} steps, 0 to {count - 1}"


def _sms_title(result: MessagePreview) -> str:
    sms = result.sms
    assert sms is not None  # only called with an sms or txt part
    return f"SMS: {_length(sms.as_dict())}"


def _length(sms: dict[str, Any]) -> str:
    unit = "septets" if sms["encoding"] == "GSM-7" else "UTF-16 units"
    return (f"{sms['characters']} characters ({sms['units']} {unit}), {sms['encoding']}, "
            f"{sms['segments']} segment{'s' if sms['segments'] != 1 else ''}")

