"""Per-session inbound throttle: a token bucket, and a flood detector that asks for a logout."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; time is passed in (seconds)."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    last: float | None = field(default=None, init=False)
    rejected_in_row: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self.last is not None and now > self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.rejected_in_row = 0
            return True
        self.rejected_in_row += 1
        return False

    def flooding(self) -> bool:
        """Still sending after a whole burst's worth of throttled messages in a row."""
        return self.rate > 0 and self.rejected_in_row > max(self.burst, 10)
