"""What a series of alternating A/B pairs says, and how sure it is.

Each pair met the same spell of the machine, so the pair's ratio A/B is the unit of evidence.
The median pair ratio comes with a distribution-free interval (order statistics of the ratios,
coverage from the binomial distribution) and the sign test's two-sided p: how often a change
that does nothing would win at least this lopsided a share of the pairs.

Both assume the pairs are independent. Pairs of one run share the machine's slower spells, so
they are less independent than that: a "resolved" run can still be a lucky one (measured: two
8-pair runs at +10-11 % whose change gained 3 % over 32 pairs). Confirm with a second run, the
sides swapped (`bench/ab.py HEAD --a HEAD~1`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from math import comb


@dataclass(frozen=True)
class PairSummary:
    pairs: int
    a_won: int
    median_ratio: float  # median of A/B over the pairs
    low: float  # the interval for that median
    high: float
    coverage: float  # the interval's coverage, at least the one asked for (when the pairs allow)
    p_sign: float  # two-sided sign test
    asked: float  # the coverage asked for

    @property
    def resolved(self) -> bool:
        """The interval has the coverage asked for and leaves out "no difference" (too few
        pairs for that coverage never resolve anything)."""
        return self.coverage >= self.asked and (self.low > 1.0 or self.high < 1.0)

    def describe(self) -> str:
        verdict = "resolved" if self.resolved else "not resolved: more pairs, or no real difference"
        return (
            f"A/B per pair: median x{self.median_ratio:.3f}"
            f" ({self.coverage:.0%} interval x{self.low:.3f} to x{self.high:.3f});"
            f" A won {self.a_won} of {self.pairs}, sign test p = {self.p_sign:.3f}; {verdict}"
        )


def _binomial_tail(n: int, k: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return float(sum(comb(n, i) for i in range(k + 1))) / float(2**n)


def summarize(a: list[float], b: list[float], coverage: float = 0.9) -> PairSummary:
    """The pairs (a[i], b[i]): both sides' figures, larger is better."""
    if len(a) != len(b) or not a:
        raise ValueError("need the same number of figures on both sides, at least one")
    if min(b) <= 0:
        raise ValueError("B's figures must be positive")
    n = len(a)
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    wins = sum(x > y for x, y in zip(a, b, strict=True))
    losses = sum(x < y for x, y in zip(a, b, strict=True))
    decided = wins + losses  # ties say nothing either way
    extreme = min(wins, losses)
    p_sign = min(1.0, 2 * _binomial_tail(decided, extreme)) if decided else 1.0
    # [x_(k), x_(n-k+1)] covers the median with 1 - 2 P(X < k): the narrowest such interval that
    # still covers as much as asked; with too few pairs for that, the whole range (k = 1).
    k = 1
    while k + 1 <= n // 2 and _binomial_tail(n, k) <= (1 - coverage) / 2:
        k += 1
    reached = 1 - 2 * _binomial_tail(n, k - 1)
    return PairSummary(
        n, wins, statistics.median(ratios), ratios[k - 1], ratios[n - k], reached, p_sign, coverage
    )
