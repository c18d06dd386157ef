"""How a cycle spends its search budget: pure arithmetic, no I/O.

The budget is the number of transaction ids a cycle may look up, derived from the
configured request rate and the share of the cycle interval it may spend. Re-checks
(pending, failed lookups, unmatched customers that may heal) and new samples of each
source compete for it; water-filling makes the split fair: nobody gets more than it
asked for, and what one claimant leaves unused goes to the others.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class CycleBudget:
    """Ids a cycle may look up, and the wall time it may spend doing so."""

    ids: int
    requests: int
    seconds: float


def cycle_budget(
    *,
    requests_per_second: float,
    max_ids_per_request: int,
    every: timedelta,
    share: float,
) -> CycleBudget:
    """Return how much one cycle may search without overrunning the next one."""
    seconds = every.total_seconds() * share
    requests = max(1, math.floor(requests_per_second * seconds))
    return CycleBudget(ids=requests * max_ids_per_request, requests=requests, seconds=seconds)


def fair_shares(capacity: int, demands: Mapping[str, int]) -> dict[str, int]:
    """Split `capacity` among claimants by max-min fairness (water-filling).

    Each claimant gets min(demand, equal share); unused shares are redistributed.
    Leftover units after integer division go to the claimants listed first.
    """
    shares = dict.fromkeys(demands, 0)
    remaining = max(0, capacity)
    open_claims = {name: demand for name, demand in demands.items() if demand > 0}
    while remaining > 0 and open_claims:
        each, extra = divmod(remaining, len(open_claims))
        if each == 0:
            for name in list(open_claims)[:extra]:
                shares[name] += 1
                open_claims[name] -= 1
            break
        granted = 0
        for name in list(open_claims):
            give = min(each, open_claims[name])
            shares[name] += give
            open_claims[name] -= give
            granted += give
            if open_claims[name] == 0:
                del open_claims[name]
        remaining -= granted
        if granted == 0:
            break
    return shares


def split_budget(
    capacity: int, *, recheck_demand: int, sample_demands: Mapping[str, int], recheck_share: float
) -> tuple[int, dict[str, int]]:
    """Split a cycle's ids between re-checks and each source's new samples.

    Re-checks are guaranteed `recheck_share` of the budget when they need it (so a
    backlog of pending events is always worked off), sources share the rest fairly,
    and whatever either side leaves unused goes to the other.
    """
    reserved = min(recheck_demand, math.floor(capacity * recheck_share))
    samples = fair_shares(capacity - reserved, sample_demands)
    unused = capacity - reserved - sum(samples.values())
    rechecks = reserved + min(unused, recheck_demand - reserved)
    return rechecks, samples
