"""P4 email: the ``smtp`` channel sending to a local SMTP sink vs a raw smtplib loop.

    .venv/bin/python -m bench.smtp --messages 2000
    # options: --rounds 3  --threads 1  --json

This

1. starts an aiosmtpd sink in a subprocess on 127.0.0.1 (its own process, so the sink
   does not share the sender's GIL); the sink accepts everything and answers each DATA
   with ``250 2.0.0 Ok: queued as C<connection>-M<message>``, numbering connections and
   messages, so the sender can tell how many connections carried the messages;
2. renders N marketing messages (subject, text and HTML parts, ~1 KB + ~3 KB) from
   compiled Jinja templates, before any timing;
3. per round, measures in the same run:
   *raw*: the same messages prebuilt to bytes (``SmtpChannel.render``, outside the
   timing), then ``smtplib.SMTP.sendmail`` in a loop on one reused connection;
   *project*: ``SmtpChannel.send(message)`` for each rendered message: MIME build,
   Message-ID, signed List-Unsubscribe token, one SMTP transaction on the thread's
   reused connection, reply classification;
4. checks that every send was accepted, that the sink saw each message once, and counts
   the connections used (expected: one per sending thread);
5. prints both rates (best round of each), every round, and the ratio (target >= 70%).

Timings are printed, never asserted: benchmarks are not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import smtplib
import subprocess
import sys
import threading
import time
from typing import Any

from jinja2 import Environment

from bench.common import free_port
from campaigns.config.options.smtp import SmtpChannelConfig
from campaigns.sending.messages import OutboundMessage, Outcome
from workers.channels.smtp import SmtpChannel

SECRET_ENV = "NURTURE_BENCH_UNSUB_SECRET"
QUEUED = re.compile(r"C(\d+)-M(\d+)")

SUBJECT = "{{ name }}, our spring sale starts today — 春季特卖"
TEXT = """Hello {{ name }},

Our spring sale starts today: 20% off everything until Sunday.
{% for item in items %}- {{ item.title }}: {{ item.price }}
{% endfor %}
You have placed {{ orders }} orders with us. Thank you!

Shop · 1 Example Street · Shanghai
"""
HTML = """<!doctype html><html><body style="font-family:sans-serif">
<h1>Hello {{ name }},</h1>
<p>Our <b>spring sale</b> starts today: 20% off everything until Sunday.</p>
<table>{% for item in items %}<tr><td><a href="https://shop.example.com/p/{{ item.id }}">{{ item.title }}</a></td>
<td style="text-align:right">{{ item.price }}</td></tr>{% endfor %}</table>
<p>You have placed {{ orders }} orders with us. Thank you!</p>
<p style="color:#888;font-size:12px">Shop · 1 Example Street · Shanghai ·
<a href="https://u.shop.example.com/">unsubscribe</a></p>
""" + "<!-- padding to a typical marketing size -->\n" * 40 + "</body></html>\n"


SINK = r"""
import asyncio, sys, time
from aiosmtpd.controller import Controller

class Sink:
    def __init__(self):
        self.connections = {}
        self.messages = 0
    async def handle_DATA(self, server, session, envelope):
        conn = self.connections.setdefault(id(session), len(self.connections) + 1)
        self.messages += 1
        return f"250 2.0.0 Ok: queued as C{conn}-M{self.messages}"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()  # runs until the parent closes our stdin
controller.stop()
"""


def start_sink(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("the SMTP sink did not start")
    return proc


def make_messages(count: int, round_no: int) -> list[OutboundMessage]:
    env = Environment(autoescape=False)
    subject, text = env.from_string(SUBJECT), env.from_string(TEXT)
    html = Environment(autoescape=True).from_string(HTML)
    messages = []
    for i in range(count):
        context: dict[str, Any] = {
            "name": f"Customer {i}",
            "orders": i % 17,
            "items": [{"id": i * 10 + k, "title": f"Item {k} <special>", "price": f"¥{99 + k}.00"} for k in range(5)],
        }
        messages.append(OutboundMessage(
            send_key=f"spring_sale:0:{i}:{round_no}", delivery_id=i, campaign="spring_sale", step=0,
            channel="email", recipient=f"customer{i}@example.org", customer_external_id=f"c{i}",
            parts={"subject": subject.render(context), "txt": text.render(context), "html": html.render(context)},
            metadata={"purpose": "marketing"},
        ))
    return messages


def run_raw(options: SmtpChannelConfig, channel: SmtpChannel, messages: list[OutboundMessage]) -> float:
    prebuilt = [(m.recipient, channel.render(m)) for m in messages]
    sender = options.from_address
    smtp = smtplib.SMTP(options.host, options.port, timeout=30)
    smtp.ehlo()
    started = time.perf_counter()
    for recipient, data in prebuilt:
        smtp.sendmail(sender, [recipient], data)
    elapsed = time.perf_counter() - started
    smtp.quit()
    return len(prebuilt) / elapsed


def run_project(options: SmtpChannelConfig, messages: list[OutboundMessage], threads: int) -> tuple[float, set[str]]:
    channel = SmtpChannel(name="email", options=options)
    codes: list[str] = []
    lock = threading.Lock()
    shards = [messages[t::threads] for t in range(threads)]

    def work(shard: list[OutboundMessage]) -> None:
        local = []
        for message in shard:
            result = channel.send(message)
            if result.outcome is not Outcome.OK:
                raise SystemExit(f"send failed: {result}")
            local.append(result.code or "")
        with lock:
            codes.extend(local)

    workers = [threading.Thread(target=work, args=(shard,)) for shard in shards]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    channel.close()
    if len(codes) != len(messages):
        raise SystemExit(f"only {len(codes)} of {len(messages)} sends completed")
    ids = [QUEUED.search(code) for code in codes]
    if not all(ids) or len({m.group(2) for m in ids if m}) != len(messages):
        raise SystemExit("the sink did not see every message exactly once")
    return len(messages) / elapsed, {m.group(1) for m in ids if m}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="sending threads for the project side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault(SECRET_ENV, "bench-unsubscribe-secret")
    port = free_port()
    sink = start_sink(port)
    options = SmtpChannelConfig.model_validate({
        "kind": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
        "from": "Shop <news@shop.example.com>",
        "unsubscribe_url": "https://u.shop.example.com/u/{token}",
        "unsubscribe_mailto": "unsubscribe@shop.example.com",
        "unsubscribe_secret_env": SECRET_ENV,
    })
    raw_rates: list[float] = []
    project_rates: list[float] = []
    connections: list[int] = []
    try:
        renderer = SmtpChannel(name="prebuild", options=options)
        for round_no in range(args.rounds):
            messages = make_messages(args.messages, round_no)
            raw_rates.append(run_raw(options, renderer, messages))
            rate, conns = run_project(options, messages, args.threads)
            project_rates.append(rate)
            connections.append(len(conns))
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=10)

    raw, project = max(raw_rates), max(project_rates)
    report = {
        "messages": args.messages, "rounds": args.rounds, "threads": args.threads,
        "raw_per_s": round(raw, 1), "project_per_s": round(project, 1), "ratio": round(project / raw, 3),
        "raw_rounds": [round(r, 1) for r in raw_rates], "project_rounds": [round(r, 1) for r in project_rates],
        "connections_per_round": connections,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"P4 email: {args.messages} messages x {args.rounds} rounds, project on {args.threads} thread(s)")
    print(f"  raw smtplib loop, 1 reused connection, prebuilt bytes: {raw:8.1f} msg/s  "
          f"(rounds: {', '.join(f'{r:.0f}' for r in raw_rates)})")
    print(f"  SmtpChannel.send (build + sign + send + classify):    {project:8.1f} msg/s  "
          f"(rounds: {', '.join(f'{r:.0f}' for r in project_rates)})")
    print(f"  connections used by the channel per round: {connections} (one per thread expected)")
    verdict = "meets" if project / raw >= 0.7 else "misses"
    print(f"  ratio project/raw: {project / raw:.0%} (target >= 70%: {verdict})")


if __name__ == "__main__":
    main()
