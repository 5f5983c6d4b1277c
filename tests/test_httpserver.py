"""Unit tests for httpserver: requests in progress, the connection cap, and Limits."""

from __future__ import annotations

import httpserver


def test_active_requests_wait_idle_is_false_while_a_request_runs_and_true_after():
    active = httpserver.ActiveRequests()
    active.enter()
    assert active.wait_idle(0.01) is False
    active.leave()
    assert active.wait_idle(0) is True
