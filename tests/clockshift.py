"""Run pytest with the wall clock moved to a chosen local time, subprocesses included.

    python -m tests.clockshift 22:30 -- tests/e2e/test_spine_sqlite.py -q
    python -m tests.clockshift 02:00 --zone Asia/Shanghai -- tests/campaigns tests/e2e
    python -m tests.clockshift 2026-07-01T22:30:00+08:00 -- tests/integration

The suite must pass at any hour (the worker reads the real clock and defers marketing in
quiet hours), so the test target reruns the send paths here, at 22:30 Asia/Shanghai, inside
the default quiet hours. The shift is libfaketime's (the ``libfaketime`` test extra bundles
the library) preloaded through ``LD_PRELOAD`` with a fixed offset: the worker and scheduler
processes a test starts inherit it, so every process sees the same moved wall clock while
it keeps ticking. Monotonic clocks (timeouts, sleeps) are left alone. Before pytest starts,
a child Python checks that the shift took effect, so a pass here can never be a pass at the
real time by accident.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

#: How far the checked clock may be from the target (the check itself takes a moment).
TOLERANCE_S = 120


def target_moment(spec: str, *, zone: str, now: datetime) -> datetime:
    """The aware moment ``spec`` names: "HH:MM" is that time today in ``zone``; anything
    else is an ISO 8601 time (naive ones are read in ``zone``)."""
    tz = ZoneInfo(zone)
    try:
        clock = time.fromisoformat(spec)
    except ValueError:
        moment = datetime.fromisoformat(spec)
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return datetime.combine(now.astimezone(tz).date(), clock, tzinfo=tz)


def faketime_env(offset_s: int) -> dict[str, str]:
    """The environment that moves every process's wall clock by ``offset_s`` seconds."""
    try:
        import libfaketime
    except ImportError:
        sys.exit("tests.clockshift needs the libfaketime package: pip install -e '.[test]'")
    _, additions = libfaketime.get_reload_information()
    env = {**os.environ, **additions}
    env.pop("FAKETIME_NO_CACHE", None)  # a fixed offset: caching it is right and cheaper
    env["FAKETIME"] = f"{offset_s:+d}"
    # Both spellings: libfaketime renamed the switch; timeouts and sleeps stay real.
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = env["DONT_FAKE_MONOTONIC"] = "1"
    env["FAKETIME_DID_REEXEC"] = "true"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.clockshift", description=__doc__.split("\n\n")[0])
    parser.add_argument("at", help='"HH:MM" (today, in --zone) or an ISO 8601 time')
    parser.add_argument("--zone", default="Asia/Shanghai", help="time zone of HH:MM (default: %(default)s)")
    parser.usage = "%(prog)s [-h] [--zone ZONE] AT -- [pytest arguments]"
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    pytest_args = argv[split + 1:]
    try:
        target = target_moment(args.at, zone=args.zone, now=datetime.now(UTC))
    except (ValueError, KeyError) as exc:
        parser.error(f"cannot read {args.at!r} in zone {args.zone!r}: {exc}")
    env = faketime_env(round((target - datetime.now(UTC)).total_seconds()))
    seen = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env,
                          capture_output=True, text=True, check=True).stdout
    if abs(float(seen) - target.timestamp()) > TOLERANCE_S:
        sys.exit(f"libfaketime did not move the clock (a child saw {datetime.fromtimestamp(float(seen), UTC)}, "
                 f"wanted {target.astimezone(UTC)}); is LD_PRELOAD honoured on this platform?")
    print(f"clockshift: wall clock at {target.isoformat()} ({target.astimezone(UTC):%H:%M} UTC), "
          f"offset {env['FAKETIME']} s, for pytest {' '.join(pytest_args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], env=env)


if __name__ == "__main__":
    sys.exit(main())
