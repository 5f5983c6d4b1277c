"""Unit tests of joblist: the query of GET /jobs, read strictly, and its opaque cursors."""

from __future__ import annotations

import base64
import json

import pytest

import joblist
from joblist import ListQuery

KEY = "2027-01-15T08:00:00.000Z#0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f"
# encode_cursor(KEY, None) and encode_cursor(KEY, "failed"), pinned: replicas of two releases
# serve one client during a rolling deploy, so a change of format must be deliberate.
CURSOR_ALL = ("Zab8l_iHy0N7ImsiOiIyMDI3LTAxLTE1VDA4OjAwOjAwLjAwMFojMGQ0YzNmMGUtOGY1YS00YjhlLTljMWQtMmEzYjRjNWQ2ZTdmIiwic"
              "yI6bnVsbH0")
CURSOR_FAILED = ("rplxZphdEXB7ImsiOiIyMDI3LTAxLTE1VDA4OjAwOjAwLjAwMFojMGQ0YzNmMGUtOGY1YS00YjhlLTljMWQtMmEzYjRjNWQ2ZTdmIiw"
                 "icyI6ImZhaWxlZCJ9")
NOT_ISSUED = "cursor is not one this service issued; pass nextCursor from the previous page unchanged"


def test_no_parameters_list_all_jobs_twenty_at_a_time_from_the_newest():
    assert joblist.parse_query("/jobs") == ListQuery(None, 20, None)
    assert joblist.parse_query("/jobs?") == ListQuery(None, 20, None)


def test_state_limit_and_cursor_are_read():
    assert joblist.parse_query(f"/jobs?state=failed&limit=50&cursor={CURSOR_FAILED}") == ListQuery("failed", 50, KEY)
    assert joblist.parse_query(f"/jobs?cursor={CURSOR_ALL}&limit=1") == ListQuery(None, 1, KEY)
    assert joblist.parse_query("/jobs?limit=100&state=canceled") == ListQuery("canceled", 100, None)


def test_cursors_are_pinned_base64url_without_padding():
    assert joblist.encode_cursor(KEY, None) == CURSOR_ALL
    assert joblist.encode_cursor(KEY, "failed") == CURSOR_FAILED
    assert joblist.decode_cursor(CURSOR_ALL, None) == KEY


@pytest.mark.parametrize(("query", "message"), [
    ("limit=0", "limit must be an integer from 1 to 100, got '0'"),
    ("limit=101", "limit must be an integer from 1 to 100, got '101'"),
    ("limit=", "limit must be an integer from 1 to 100, got ''"),
    ("limit=1.0", "limit must be an integer from 1 to 100, got '1.0'"),
    ("limit=+5", "limit must be an integer from 1 to 100, got ' 5'"),
    ("limit=1_0", "limit must be an integer from 1 to 100, got '1_0'"),
    ("limit=%D9%A3", "limit must be an integer from 1 to 100, got '٣'"),
    ("limit=99999999999999999999", "limit must be an integer from 1 to 100, got '99999999999999999999'"),
    ("state=bogus", "state must be one of queued, running, done, failed, canceled, got 'bogus'"),
    ("state=FAILED", "state must be one of queued, running, done, failed, canceled, got 'FAILED'"),
    ("state=", "state must be one of queued, running, done, failed, canceled, got ''"),
    ("page=2", "unknown query parameter 'page'; accepted: state, limit, cursor"),
    ("state=done&offset=5&sort=asc", "unknown query parameters 'offset', 'sort'; accepted: state, limit, cursor"),
    ("limit=5&limit=5", "query parameter 'limit' is given more than once; give it at most once"),
    ("state=done&state=failed", "query parameter 'state' is given more than once; give it at most once"),
    ("state=%ff", "the query string is not UTF-8 once percent-decoded"),
    ("cursor=", NOT_ISSUED),
    ("cursor=garbage", NOT_ISSUED),
    ("cursor=" + "A" * 513, NOT_ISSUED),
    ("cursor=" + CURSOR_ALL[:-1], NOT_ISSUED),
    ("cursor=" + CURSOR_ALL[:20] + ("B" if CURSOR_ALL[20] != "B" else "C") + CURSOR_ALL[21:], NOT_ISSUED),
    (f"cursor={CURSOR_FAILED}", "cursor was issued for state=failed, not the list of all jobs: send it with the "
                                "state filter of the page it came from"),
    (f"state=done&cursor={CURSOR_FAILED}", "cursor was issued for state=failed, not state=done: send it with the "
                                           "state filter of the page it came from"),
    (f"state=queued&cursor={CURSOR_ALL}", "cursor was issued for the list of all jobs, not state=queued: send it "
                                          "with the state filter of the page it came from"),
])
def test_bad_parameters_are_refused_naming_them_and_what_is_accepted(query, message):
    with pytest.raises(ValueError) as info:
        joblist.parse_query(f"/jobs?{query}")
    assert str(info.value) == message


@pytest.mark.parametrize("fields", [{"k": "", "s": None}, {"k": "2027-01-15T08:00:00.000Z#", "s": None},
                                    {"k": "yesterday#job-1", "s": None}, {"k": KEY, "s": "paused"},
                                    {"k": 7, "s": None}, {"s": None}, [KEY, None], "k"])
def test_a_cursor_with_a_valid_checksum_but_not_the_shape_of_one_the_service_issues_is_refused(fields):
    """The checksum is public: what it wraps is checked too, so no store sees a made-up key."""
    payload = json.dumps(fields).encode()
    forged = base64.urlsafe_b64encode(joblist._checksum(payload) + payload).rstrip(b"=").decode()
    with pytest.raises(ValueError, match=f"^{NOT_ISSUED}$"):
        joblist.decode_cursor(forged, None)
