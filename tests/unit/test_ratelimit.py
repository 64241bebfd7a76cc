""""N within M" rate limits over the state store, and the guard in front of them."""

from __future__ import annotations

from healer.config import GuardConfig
from healer.guard import ratelimit
from healer.guard.guard import Guard
from healer.policy.models import Action, Limit, Step
from healer.state import State
from healer.testing import ManualClock

ACTION: Action = "restart_unit"
W1 = "celery-w1.service"
W2 = "celery-w2.service"


def test_allows_up_to_max_then_refuses_with_reason() -> None:
    """Max attempts fit in the window; the next is refused with a reason naming unit and limit."""
    state, clock, limit = State(), ManualClock(), Limit(max=3, within=60)
    for _ in range(3):
        assert ratelimit.exceeded(state, ACTION, W1, limit, clock.time()) is None
        state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
        clock.advance(10)
    reason = ratelimit.exceeded(state, ACTION, W1, limit, clock.time())
    assert reason is not None
    assert W1 in reason
    assert "limit of 3" in reason
    assert "60s" in reason
    assert "next allowed in 30s" in reason


def test_allows_again_once_oldest_attempt_leaves_window() -> None:
    """When the oldest attempt is a full window old, one more attempt is allowed."""
    state, clock, limit = State(), ManualClock(), Limit(max=2, within=60)
    first = clock.time()
    state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
    clock.advance(20)
    state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
    clock.advance(39)
    assert ratelimit.exceeded(state, ACTION, W1, limit, clock.time()) is not None
    clock.advance(1)
    assert clock.time() - first == 60
    assert ratelimit.exceeded(state, ACTION, W1, limit, clock.time()) is None
    state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
    assert ratelimit.exceeded(state, ACTION, W1, limit, clock.time()) is not None


def test_record_forgets_attempts_outside_window() -> None:
    """Recording drops attempts that have left the window, so the state does not grow."""
    state, clock, limit = State(), ManualClock(), Limit(max=5, within=60)
    for _ in range(4):
        state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
        clock.advance(100)
    assert state.actions[ratelimit.key(ACTION, W1)] == [clock.time() - 100]


def test_units_and_actions_are_counted_separately() -> None:
    """Attempts on one unit, or of one action, do not count against another."""
    state, clock, limit = State(), ManualClock(), Limit(max=1, within=600)
    state.record_attempt(ratelimit.attempt(state, ACTION, W1, limit, clock.time()))
    assert ratelimit.exceeded(state, ACTION, W1, limit, clock.time()) is not None
    assert ratelimit.exceeded(state, ACTION, W2, limit, clock.time()) is None
    assert ratelimit.exceeded(state, "other_action", W1, limit, clock.time()) is None


def test_guard_allows_listed_unit_within_limit() -> None:
    """A listed unit under its limit is allowed."""
    verdict = Guard(frozenset({W1}), GuardConfig()).admit(Step(action=ACTION), W1, State(), 0.0)
    assert verdict.allowed
    assert verdict.outcome == "allowed"


def test_guard_rate_limits_listed_unit() -> None:
    """A listed unit over its limit is rate_limited with the limit's reason."""
    state, clock = State(), ManualClock()
    step = Step(action=ACTION, limit=Limit(max=1, within=600))
    state.record_attempt(ratelimit.attempt(state, ACTION, W1, step.limit, clock.time()))
    verdict = Guard(frozenset({W1}), GuardConfig()).admit(step, W1, state, clock.time())
    assert not verdict.allowed
    assert verdict.outcome == "rate_limited"
    assert "limit of 1" in verdict.reason


def test_guard_refuses_unlisted_unit_before_limits() -> None:
    """A unit outside the allowlist is refused even when its limit is also exhausted."""
    state, clock = State(), ManualClock()
    step = Step(action=ACTION, limit=Limit(max=1, within=600))
    state.record_attempt(ratelimit.attempt(state, ACTION, W2, step.limit, clock.time()))
    verdict = Guard(frozenset({W1}), GuardConfig()).admit(step, W2, state, clock.time())
    assert verdict.outcome == "refused"
    assert W2 in verdict.reason
    assert W1 in verdict.reason


def test_guard_refuses_step_without_unit() -> None:
    """A step with no unit to act on is refused."""
    verdict = Guard(frozenset({W1}), GuardConfig()).admit(Step(action=ACTION), None, State(), 0.0)
    assert verdict.outcome == "refused"
