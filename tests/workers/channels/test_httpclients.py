"""The HTTP plumbing of the channels: Retry-After, the per-thread clients, and a request
that got no answer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx

from campaigns.sending.messages import Outcome
from workers.channels.httpclients import ThreadClients, parse_retry_after, request_or_retry


def test_a_retry_after_date_in_minus_0000_is_read_as_gmt_whatever_the_machines_zone(monkeypatch):
    import time

    # Given a machine in Shanghai (a naive date would be read as local time, 8 h off)
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        later = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S -0000")
        # Then a Retry-After date "-0000" still means two minutes from now
        assert 100 < parse_retry_after(later) <= 120
    finally:
        monkeypatch.undo()
        time.tzset()


def test_each_thread_gets_its_own_client_and_close_closes_them_all():
    clients = ThreadClients(timeout_s=1.0, headers={"User-Agent": "probe/1"},
                            transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    mine = clients.get()
    theirs: list[httpx.Client] = []
    thread = threading.Thread(target=lambda: theirs.append(clients.get()))
    thread.start()
    thread.join()
    assert clients.get() is mine and theirs[0] is not mine
    assert mine.headers["User-Agent"] == "probe/1"
    clients.close()
    assert mine.is_closed and theirs[0].is_closed


def test_a_request_without_an_answer_is_a_retry():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler, code in ((refuse, "network"), (slow, "timeout")):
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            result = request_or_retry(client, "GET", "http://sink.test/")
        assert not isinstance(result, httpx.Response)
        assert result.outcome is Outcome.RETRY and result.code == code
