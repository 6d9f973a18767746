"""Per-session inbound throttle: a token bucket, and a flood detector that asks for a logout."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; time is passed in (seconds).

    Flood detection: every throttled message adds a strike; strikes leak away at ``rate`` per
    second. More than ``max(burst, 10)`` strikes (a session sending well over twice its rate,
    whatever the rhythm) is flooding. Counting only *consecutive* rejects would never catch a
    sustained flood: the bucket refills a token every ``1/rate`` s, which breaks every run.
    """

    rate: float
    burst: int
    tokens: float = field(init=False)
    last: float | None = field(default=None, init=False)
    strikes: float = field(default=0.0, init=False)
    rejected_in_row: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self.last is not None and now > self.last:
            elapsed = now - self.last
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
            self.strikes = max(0.0, self.strikes - elapsed * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.rejected_in_row = 0
            return True
        self.rejected_in_row += 1
        self.strikes += 1.0
        return False

    def flooding(self) -> bool:
        """Throttled messages keep arriving faster than they leak away: time to log it out."""
        return self.rate > 0 and self.strikes > max(self.burst, 10)
