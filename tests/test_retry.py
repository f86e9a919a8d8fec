"""Specification of ``openlineage_emitter.retry``: what retries, how long it waits, when it stops.

Every clock-dependent behaviour runs under ``freezegun`` with ``tick=False``; time only moves
when a test (or the recording ``sleep`` handed to tenacity) calls ``frozen.tick(...)``.
Nothing here really sleeps.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone

import pytest
import requests
import tenacity
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory

from openlineage_emitter._caller import BackendBusy, CallTimeout
from openlineage_emitter.retry import (
    RETRYABLE_STATUSES,
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    Verdict,
    classify,
    parse_retry_after,
)

#: 2026-10-21 is a Wednesday; tests that parse HTTP dates count from here.
FROZEN_AT = datetime(2026, 10, 21, 7, 26, 47, tzinfo=timezone.utc)
HTTP_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"  # 73 s after FROZEN_AT

#: Far enough away that the deadline never interferes with schedule/attempt tests.
NO_DEADLINE = 10_000.0


# --------------------------------------------------------------------------- helpers


def http_error(status: int, headers: Mapping[str, str] | None = None) -> requests.HTTPError:
    """A ``requests.HTTPError`` carrying a real ``requests.Response``, as ``raise_for_status`` makes."""
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.url = "http://lineage.invalid/api/v1/lineage"
    return requests.HTTPError(f"{status} error", response=response)


def wrapped(cause: BaseException) -> RuntimeError:
    """A ``RuntimeError`` raised ``from`` ``cause`` (as a token provider might re-raise)."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("token provider failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.fixture
def frozen() -> Iterator[FrozenDateTimeFactory]:
    """Wall clock and ``time.monotonic`` frozen at ``FROZEN_AT``; advance with ``frozen.tick(s)``."""
    with freeze_time(FROZEN_AT, tick=False) as factory:
        assert isinstance(factory, FrozenDateTimeFactory)
        yield factory


class RecordingSleep:
    """A ``sleep`` for tenacity: records each pause and advances the frozen clock by it."""

    def __init__(self, frozen: FrozenDateTimeFactory) -> None:
        self.frozen = frozen
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.frozen.tick(seconds)


class AlwaysFails:
    """A delivery attempt that always raises a fresh exception from ``make``.

    ``duration_s`` advances the frozen clock inside each attempt (the call itself takes time);
    ``on_call`` runs at the start of each attempt with the attempt number.
    """

    def __init__(
        self,
        make: Callable[[], BaseException],
        *,
        frozen: FrozenDateTimeFactory | None = None,
        duration_s: float = 0.0,
        on_call: Callable[[int], None] | None = None,
    ) -> None:
        self.make = make
        self.frozen = frozen
        self.duration_s = duration_s
        self.on_call = on_call
        self.raised: list[BaseException] = []

    @property
    def calls(self) -> int:
        return len(self.raised)

    def __call__(self) -> None:
        if self.on_call is not None:
            self.on_call(len(self.raised) + 1)
        if self.frozen is not None and self.duration_s:
            self.frozen.tick(self.duration_s)
        exc = self.make()
        self.raised.append(exc)
        raise exc


def run(
    policy: RetryPolicy,
    attempt: AlwaysFails,
    sleep: RecordingSleep,
    *,
    abort: threading.Event | None = None,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> BaseException:
    """Drive ``policy.retrying`` to exhaustion and return what it raised.

    Expects an exception of the type ``attempt`` raises (tenacity's ``RetryError`` would fail this).
    """
    retrying = policy.retrying(sleep=sleep, abort=abort, before_sleep=before_sleep)
    with pytest.raises(type(attempt.make())) as info:
        retrying(attempt)
    return info.value


def connection_refused() -> BaseException:
    return requests.ConnectionError("connection refused")


# --------------------------------------------------------------------------- classify: transport errors


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        pytest.param(requests.ConnectionError("refused"), "connection_error", id="requests.ConnectionError"),
        pytest.param(requests.Timeout("slow"), "connection_error", id="requests.Timeout"),
        pytest.param(requests.ReadTimeout("slow read"), "connection_error", id="requests.ReadTimeout"),
        pytest.param(
            requests.ConnectTimeout("slow connect"), "connection_error", id="requests.ConnectTimeout"
        ),
        pytest.param(ConnectionRefusedError(111, "refused"), "connection_error", id="ConnectionRefusedError"),
        pytest.param(TimeoutError("timed out"), "timeout", id="TimeoutError"),
        pytest.param(OSError(101, "network unreachable"), "os_error", id="OSError"),
        pytest.param(CallTimeout("abandoned after 5s"), "call_timeout", id="CallTimeout"),
        pytest.param(BackendBusy("too many abandoned calls"), "call_timeout", id="BackendBusy"),
    ],
)
def test_network_and_timeout_errors_are_retryable(exc: BaseException, reason: str) -> None:
    assert classify(exc) == Verdict(retryable=True, reason=reason, retry_after_s=None)


def test_cause_chain_is_walked_to_find_a_wrapped_connection_error() -> None:
    exc = wrapped(requests.ConnectionError("refused"))
    assert isinstance(exc.__cause__, requests.ConnectionError)

    assert classify(exc) == Verdict(True, "connection_error")


def test_cause_chain_is_walked_to_find_a_wrapped_http_status() -> None:
    assert classify(wrapped(http_error(503))) == Verdict(True, "http_503")


def test_runtime_error_without_a_retryable_cause_is_not_retryable() -> None:
    assert classify(RuntimeError("boom")) == Verdict(False, "RuntimeError")


@pytest.mark.parametrize("exc_type", [TypeError, ValueError])
def test_serialisation_errors_are_not_retryable(exc_type: type[Exception]) -> None:
    verdict = classify(exc_type("Object of type set is not JSON serializable"))

    assert verdict == Verdict(False, "serialization_error")


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(requests.exceptions.MissingSchema("No scheme supplied"), id="MissingSchema"),
        pytest.param(requests.exceptions.InvalidSchema("No connection adapters"), id="InvalidSchema"),
        pytest.param(requests.exceptions.InvalidURL("Invalid URL"), id="InvalidURL"),
        pytest.param(requests.exceptions.InvalidHeader("Invalid header value"), id="InvalidHeader"),
        pytest.param(requests.exceptions.InvalidJSONError("not JSON serializable"), id="InvalidJSONError"),
    ],
)
def test_request_construction_errors_are_not_retryable(exc: BaseException) -> None:
    assert classify(exc).retryable is False


# --------------------------------------------------------------------------- classify: HTTP statuses


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_http_statuses_are_retryable(status: int) -> None:
    assert classify(http_error(status)) == Verdict(True, f"http_{status}", None)


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_every_status_in_retryable_statuses_classifies_retryable(status: int) -> None:
    assert classify(http_error(status)).retryable is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_error_statuses_are_not_retryable(status: int) -> None:
    assert classify(http_error(status)) == Verdict(False, f"http_{status}", None)


def test_non_retryable_status_ignores_retry_after() -> None:
    verdict = classify(http_error(400, {"Retry-After": "7"}))

    assert verdict == Verdict(False, "http_400", None)


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_reported(status: int) -> None:
    verdict = classify(http_error(status, {"Retry-After": "7"}))

    assert verdict == Verdict(True, f"http_{status}", 7.0)


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert classify(http_error(429, {"retry-after": "7"})).retry_after_s == 7.0


def test_retryable_status_without_retry_after_has_none() -> None:
    assert classify(http_error(503)).retry_after_s is None


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_http_date_gives_exact_seconds_until_then(status: int) -> None:
    verdict = classify(http_error(status, {"Retry-After": HTTP_DATE}))

    assert verdict.retry_after_s == 73.0


def test_retry_after_http_date_follows_the_clock(frozen: FrozenDateTimeFactory) -> None:
    frozen.tick(60.5)

    assert parse_retry_after(HTTP_DATE) == 12.5


@pytest.mark.usefixtures("frozen")
def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2026 07:26:00 GMT") == 0.0


@pytest.mark.usefixtures("frozen")
def test_retry_after_http_date_in_the_past_via_classify_is_zero() -> None:
    assert classify(http_error(503, {"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"})).retry_after_s == 0.0


@pytest.mark.parametrize("value", ["soon", "", "   ", "-3", "7.5", "Wed, 99 Foo 2026"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 99999999999 07:28:00 GMT",  # year too big for a C int: OverflowError
        "Wed, 21 Oct 2026 99999999999:28:00 GMT",  # so is the hour
        "Wed, 21 Oct 99999 07:28:00 GMT",  # past datetime.MAXYEAR: ValueError
    ],
)
def test_retry_after_date_out_of_range_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_date_out_of_range_keeps_the_status_retryable() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 99999999999 07:28:00 GMT"}
    assert classify(http_error(503, headers)) == Verdict(True, "http_503", None)


def test_retry_after_garbage_via_classify_is_none() -> None:
    assert classify(http_error(429, {"Retry-After": "in a bit"})) == Verdict(True, "http_429", None)


def test_retry_after_absent_is_none() -> None:
    assert parse_retry_after(None) is None


def test_retry_after_zero_is_zero() -> None:
    assert parse_retry_after("0") == 0.0


def test_retry_after_non_ascii_digit_is_none() -> None:
    assert parse_retry_after("\xb2") is None


# --------------------------------------------------------------------------- the frozen clock


def test_frozen_clock_drives_time_monotonic(frozen: FrozenDateTimeFactory) -> None:
    start = time.monotonic()
    assert time.monotonic() == start  # tick=False: nothing moves by itself

    frozen.tick(2.5)

    assert time.monotonic() - start == pytest.approx(2.5)


def test_tenacity_measures_elapsed_time_on_the_frozen_clock(frozen: FrozenDateTimeFactory) -> None:
    """Tenacity's own ``seconds_since_start`` (what ``stop_before_delay`` uses) sees frozen time."""
    policy = RetryPolicy(attempts=3, deadline_s=NO_DEADLINE)
    attempt = AlwaysFails(lambda: http_error(503, {"Retry-After": "3"}), frozen=frozen, duration_s=1.0)
    elapsed: list[float | None] = []

    run(
        policy,
        attempt,
        RecordingSleep(frozen),
        before_sleep=lambda rs: elapsed.append(rs.seconds_since_start),
    )

    # attempt 1 takes 1 s, sleep 3 s, attempt 2 takes 1 s: 1 s, then 1 + 3 + 1 = 5 s.
    assert elapsed == [pytest.approx(1.0), pytest.approx(5.0)]


# --------------------------------------------------------------------------- RetryPolicy: attempts


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_retryable_error_is_attempted_exactly_attempts_times(
    frozen: FrozenDateTimeFactory, attempts: int
) -> None:
    policy = RetryPolicy(attempts=attempts, deadline_s=NO_DEADLINE)
    attempt = AlwaysFails(connection_refused)
    sleep = RecordingSleep(frozen)

    run(policy, attempt, sleep)

    assert attempt.calls == attempts
    assert len(sleep.pauses) == attempts - 1


def test_the_original_exception_is_reraised_not_a_retry_error(frozen: FrozenDateTimeFactory) -> None:
    attempt = AlwaysFails(connection_refused)

    raised = run(RetryPolicy(attempts=3, deadline_s=NO_DEADLINE), attempt, RecordingSleep(frozen))

    assert not isinstance(raised, tenacity.RetryError)
    assert raised is attempt.raised[-1]


def test_success_after_a_retry_returns_the_result(frozen: FrozenDateTimeFactory) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("refused")
        return "delivered"

    retrying = RetryPolicy(attempts=5, deadline_s=NO_DEADLINE).retrying(sleep=RecordingSleep(frozen))

    assert retrying(flaky) == "delivered"
    assert len(calls) == 3


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: http_error(400), id="http_400"),
        pytest.param(lambda: http_error(422), id="http_422"),
        pytest.param(lambda: TypeError("not JSON serializable"), id="serialization_error"),
    ],
)
def test_non_retryable_error_is_raised_after_exactly_one_attempt(
    frozen: FrozenDateTimeFactory, make: Callable[[], BaseException]
) -> None:
    attempt = AlwaysFails(make)
    sleep = RecordingSleep(frozen)

    raised = run(RetryPolicy(attempts=5, deadline_s=NO_DEADLINE), attempt, sleep)

    assert attempt.calls == 1
    assert sleep.pauses == []
    assert raised is attempt.raised[0]


# --------------------------------------------------------------------------- RetryPolicy: backoff schedule


@pytest.fixture
def seeded_random(request: pytest.FixtureRequest) -> Iterator[None]:
    """Seed the global ``random`` (tenacity's jitter source) and restore it afterwards."""
    state = random.getstate()
    random.seed(request.param)
    yield
    random.setstate(state)


@pytest.mark.parametrize("seeded_random", range(20), indirect=True)
@pytest.mark.usefixtures("seeded_random")
def test_backoff_is_exponential_with_jitter_of_initial_and_capped(frozen: FrozenDateTimeFactory) -> None:
    initial, cap = 0.5, 3.0
    policy = RetryPolicy(attempts=7, initial_backoff_s=initial, max_backoff_s=cap, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(connection_refused), sleep)

    assert len(sleep.pauses) == 6
    for n, pause in enumerate(sleep.pauses, start=1):
        base = initial * 2 ** (n - 1)
        assert min(base, cap) <= pause <= min(base + initial, cap), (n, pause)


def test_backoff_reaching_the_cap_sleeps_exactly_the_cap(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=8, initial_backoff_s=1.0, max_backoff_s=4.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(connection_refused), sleep)

    # sleeps 3.. have a base of 4, 8, 16, ... s: at or over the cap whatever the jitter.
    assert sleep.pauses[2:] == [4.0] * 5


def test_backoff_is_jittered(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=2, initial_backoff_s=1.0, max_backoff_s=10.0, deadline_s=NO_DEADLINE)
    firsts: set[float] = set()

    for _ in range(20):
        sleep = RecordingSleep(frozen)
        run(policy, AlwaysFails(connection_refused), sleep)
        firsts.update(sleep.pauses)

    assert len(firsts) > 1
    assert all(1.0 <= s <= 2.0 for s in firsts)


def test_retry_after_overrides_the_backoff(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=4, initial_backoff_s=0.5, max_backoff_s=10.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(lambda: http_error(429, {"Retry-After": "7"})), sleep)

    assert sleep.pauses == [7.0, 7.0, 7.0]


def test_retry_after_above_max_backoff_is_still_honoured(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=2, initial_backoff_s=0.5, max_backoff_s=1.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(lambda: http_error(503, {"Retry-After": "12"})), sleep)

    assert sleep.pauses == [12.0]


def test_retry_after_is_capped_by_retry_after_max(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=3, retry_after_max_s=5.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(lambda: http_error(429, {"Retry-After": "60"})), sleep)

    assert sleep.pauses == [5.0, 5.0]


def test_retry_after_http_date_is_honoured_and_capped(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=2, retry_after_max_s=30.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(lambda: http_error(503, {"Retry-After": HTTP_DATE})), sleep)

    assert sleep.pauses == [30.0]  # 73 s away, capped at 30 s


def test_wait_s_falls_back_to_backoff_without_retry_after(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=2, initial_backoff_s=2.0, max_backoff_s=10.0, deadline_s=NO_DEADLINE)
    sleep = RecordingSleep(frozen)

    run(policy, AlwaysFails(lambda: http_error(503)), sleep)

    assert len(sleep.pauses) == 1
    assert 2.0 <= sleep.pauses[0] <= 4.0


# --------------------------------------------------------------------------- RetryPolicy: deadline


def test_deadline_stops_before_a_sleep_that_would_cross_it(frozen: FrozenDateTimeFactory) -> None:
    # Each attempt takes 1 s and asks for 3 s: attempts end at 1, 5, 9 s; 9 + 3 >= 10 stops.
    policy = RetryPolicy(attempts=100, deadline_s=10.0)
    attempt = AlwaysFails(lambda: http_error(503, {"Retry-After": "3"}), frozen=frozen, duration_s=1.0)
    sleep = RecordingSleep(frozen)
    start = time.monotonic()

    run(policy, attempt, sleep)

    assert attempt.calls == 3
    assert sleep.pauses == [3.0, 3.0]
    assert time.monotonic() - start == pytest.approx(9.0)


def test_deadline_is_inclusive_a_sleep_ending_exactly_on_it_is_not_taken(
    frozen: FrozenDateTimeFactory,
) -> None:
    # Zero-duration attempts asking for 4 s: after attempt 2 (t=4 s) the next sleep ends at 8 s.
    policy = RetryPolicy(attempts=100, deadline_s=8.0)
    attempt = AlwaysFails(lambda: http_error(429, {"Retry-After": "4"}))
    sleep = RecordingSleep(frozen)

    run(policy, attempt, sleep)

    assert attempt.calls == 2
    assert sleep.pauses == [4.0]


def test_retry_after_beyond_the_deadline_gives_up_without_sleeping(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=5, deadline_s=10.0, retry_after_max_s=30.0)
    attempt = AlwaysFails(lambda: http_error(503, {"Retry-After": "20"}))
    sleep = RecordingSleep(frozen)

    run(policy, attempt, sleep)

    assert attempt.calls == 1
    assert sleep.pauses == []


def test_deadline_bounds_a_jittered_backoff_schedule(frozen: FrozenDateTimeFactory) -> None:
    policy = RetryPolicy(attempts=1000, initial_backoff_s=0.5, max_backoff_s=4.0, deadline_s=20.0)
    attempt = AlwaysFails(connection_refused, frozen=frozen, duration_s=0.25)
    sleep = RecordingSleep(frozen)
    start = time.monotonic()

    run(policy, attempt, sleep)

    assert attempt.calls < 1000
    # The last attempt started before the deadline (no sleep crossed it) ...
    assert time.monotonic() - start - 0.25 < 20.0
    # ... and another max-length sleep plus attempt would have crossed it.
    assert time.monotonic() - start + 4.0 + 0.25 >= 20.0


# --------------------------------------------------------------------------- RetryPolicy: abort


def test_abort_set_during_an_attempt_stops_after_that_attempt(frozen: FrozenDateTimeFactory) -> None:
    abort = threading.Event()

    def set_on_second(n: int) -> None:
        if n == 2:
            abort.set()

    attempt = AlwaysFails(connection_refused, on_call=set_on_second)
    sleep = RecordingSleep(frozen)

    raised = run(RetryPolicy(attempts=5, deadline_s=NO_DEADLINE), attempt, sleep, abort=abort)

    assert attempt.calls == 2
    assert len(sleep.pauses) == 1
    assert raised is attempt.raised[-1]


def test_abort_already_set_allows_only_the_current_attempt(frozen: FrozenDateTimeFactory) -> None:
    abort = threading.Event()
    abort.set()
    attempt = AlwaysFails(connection_refused)
    sleep = RecordingSleep(frozen)

    run(RetryPolicy(attempts=5, deadline_s=NO_DEADLINE), attempt, sleep, abort=abort)

    assert attempt.calls == 1
    assert sleep.pauses == []


def test_unset_abort_does_not_stop_retrying(frozen: FrozenDateTimeFactory) -> None:
    attempt = AlwaysFails(connection_refused)

    run(
        RetryPolicy(attempts=4, deadline_s=NO_DEADLINE),
        attempt,
        RecordingSleep(frozen),
        abort=threading.Event(),
    )

    assert attempt.calls == 4


def test_before_sleep_is_called_once_per_retry(frozen: FrozenDateTimeFactory) -> None:
    seen: list[int] = []

    run(
        RetryPolicy(attempts=4, deadline_s=NO_DEADLINE),
        AlwaysFails(connection_refused),
        RecordingSleep(frozen),
        before_sleep=lambda rs: seen.append(rs.attempt_number),
    )

    assert seen == [1, 2, 3]


# --------------------------------------------------------------------------- CircuitBreaker

THRESHOLD = 3
COOLDOWN_S = 10.0


@pytest.fixture
def breaker(frozen: FrozenDateTimeFactory) -> CircuitBreaker:
    """A breaker created on the frozen clock: opens after 3 failures, cools down for 10 s."""
    return CircuitBreaker(threshold=THRESHOLD, cooldown_s=COOLDOWN_S)


def state_now(breaker: CircuitBreaker) -> BreakerState:
    """``breaker.state``, read through a call so mypy does not keep an earlier narrowing of it."""
    return breaker.state


def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_new_breaker_is_closed_and_allows(breaker: CircuitBreaker) -> None:
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True
    assert breaker.allow() is True


def test_failures_below_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    results = [breaker.record_failure() for _ in range(THRESHOLD - 1)]

    assert results == [None] * (THRESHOLD - 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True


def test_threshold_th_consecutive_failure_opens_it(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD - 1):
        breaker.record_failure()

    assert breaker.record_failure() is BreakerState.OPEN
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False


def test_open_breaker_refuses_until_the_full_cooldown(
    breaker: CircuitBreaker, frozen: FrozenDateTimeFactory
) -> None:
    open_it(breaker)

    frozen.tick(COOLDOWN_S - 0.001)

    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False


def test_after_the_cooldown_it_is_half_open(breaker: CircuitBreaker, frozen: FrozenDateTimeFactory) -> None:
    open_it(breaker)

    frozen.tick(COOLDOWN_S)

    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_allows_exactly_one_probe(breaker: CircuitBreaker, frozen: FrozenDateTimeFactory) -> None:
    open_it(breaker)
    frozen.tick(COOLDOWN_S)

    assert breaker.allow() is True
    assert breaker.probing is True
    assert breaker.allow() is False
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_stays_exclusive_however_long_it_takes(
    breaker: CircuitBreaker, frozen: FrozenDateTimeFactory
) -> None:
    open_it(breaker)
    frozen.tick(COOLDOWN_S)
    assert breaker.allow() is True

    frozen.tick(10 * COOLDOWN_S)

    assert breaker.allow() is False


def test_probe_success_closes_it(breaker: CircuitBreaker, frozen: FrozenDateTimeFactory) -> None:
    open_it(breaker)
    frozen.tick(COOLDOWN_S)
    assert breaker.allow() is True

    assert breaker.record_success() is BreakerState.CLOSED
    assert breaker.state is BreakerState.CLOSED
    assert breaker.probing is False
    assert breaker.allow() is True


def test_success_while_closed_reports_no_change(breaker: CircuitBreaker) -> None:
    breaker.record_failure()

    assert breaker.record_success() is None
    assert breaker.state is BreakerState.CLOSED


def test_probe_failure_reopens_for_another_full_cooldown(
    breaker: CircuitBreaker, frozen: FrozenDateTimeFactory
) -> None:
    open_it(breaker)
    frozen.tick(COOLDOWN_S)
    assert breaker.allow() is True
    frozen.tick(2.0)  # the probe itself takes a while

    assert breaker.record_failure() is BreakerState.OPEN
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False
    assert breaker.probing is False

    frozen.tick(COOLDOWN_S - 0.001)
    assert breaker.allow() is False

    frozen.tick(0.001)
    assert state_now(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow() is True


def test_closed_breaker_needs_threshold_fresh_failures_after_a_probe_success(
    breaker: CircuitBreaker, frozen: FrozenDateTimeFactory
) -> None:
    open_it(breaker)
    frozen.tick(COOLDOWN_S)
    breaker.allow()
    breaker.record_success()

    assert [breaker.record_failure() for _ in range(THRESHOLD - 1)] == [None] * (THRESHOLD - 1)
    assert breaker.record_failure() is BreakerState.OPEN


def test_a_success_in_between_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    for _ in range(THRESHOLD - 1):
        breaker.record_failure()
    breaker.record_success()
    results = [breaker.record_failure() for _ in range(THRESHOLD - 1)]

    assert results == [None] * (THRESHOLD - 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True


@pytest.mark.usefixtures("frozen")
def test_threshold_one_opens_on_the_first_failure() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=COOLDOWN_S)

    assert breaker.record_failure() is BreakerState.OPEN
    assert breaker.allow() is False


@pytest.mark.usefixtures("frozen")
def test_threshold_zero_never_opens() -> None:
    breaker = CircuitBreaker(threshold=0, cooldown_s=COOLDOWN_S)

    results = {breaker.record_failure() for _ in range(1000)}

    assert results == {None}
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True
