"""The budget in the proxy's unit: milliseconds as given, or the FLOPs of the largest arch
measured within it."""

from __future__ import annotations

from nas._errors import ConfigError
from nas.arch import ArchConfig
from nas.latency import LatencyMeter, format_ms
from nas.models import count_flops
from nas.search._prepare import SearchContext
from nas.space import SearchSpace


def space_reach(ctx: SearchContext, meter: LatencyMeter) -> str | None:
    """Measure the space's smallest and largest archs on the target (kept in the summary)
    and return a warning when the budget does not cut the space: a latency is a property
    of the machine, so a budget that splits the space on one CPU can admit all of it, or
    none of it, on another."""
    budget = ctx.options.latency_budget_ms
    small = meter.measure_arch(ctx.space.min_arch).median_ms
    large = meter.measure_arch(ctx.space.max_arch).median_ms
    ctx.extra["space_latency_ms"] = {"min_arch": small, "max_arch": large}
    where = f"on {meter.target.name} here"
    if large <= budget:
        warning = (
            f"warning: the {format_ms(budget)} budget admits the whole space {where} (its "
            f"largest arch measures {format_ms(large)}): the budget constrains nothing; "
            f"pass a lower --latency-budget (between {format_ms(small)} and "
            f"{format_ms(large)}) for a trade-off"
        )
    elif small > budget:
        warning = (
            f"warning: no arch of the space fits the {format_ms(budget)} budget {where} (its "
            f"smallest measures {format_ms(small)}): raise --latency-budget"
        )
    else:
        return None
    ctx.extra["budget_warning"] = warning
    return warning


def objective_budget(ctx: SearchContext, meter: LatencyMeter) -> float:
    """The budget in the proxy's unit: milliseconds, or MFLOPs of an arch at the budget."""
    budget = ctx.options.latency_budget_ms
    if ctx.options.proxy != "flops":
        return budget
    arch, latency = flops_at_latency(ctx.space, meter, budget)
    ctx.extra["flops_budget"] = {
        "arch": arch.to_dict(),
        "latency_ms": latency,
        "mflops": count_flops(arch) / 1e6,
    }
    ctx.log(
        f"FLOPs budget: {count_flops(arch) / 1e6:.1f}M, the FLOPs of {arch.short_name()} "
        f"which measures {format_ms(latency)} (budget {format_ms(budget)})"
    )
    return count_flops(arch) / 1e6


def interpolate_arch(space: SearchSpace, t: float) -> ArchConfig:
    """The arch at fraction ``t`` of every axis's sorted choices (0: min arch, 1: max)."""
    params = {k: v[round(t * (len(v) - 1))] for k, v in space.choices.items()}
    return ArchConfig.from_params(params)


def flops_at_latency(
    space: SearchSpace, meter: LatencyMeter, budget_ms: float
) -> tuple[ArchConfig, float]:
    """Bisect along min->max archs for the largest one measured within ``budget_ms``."""
    lo, hi = 0.0, 1.0
    best = space.min_arch
    best_ms = meter.measure_arch(best).median_ms
    if best_ms > budget_ms:
        raise ConfigError(
            f"even the smallest arch of {space.name!r} measures {format_ms(best_ms)} on "
            f"{meter.target.name}, over the {format_ms(budget_ms)} budget: raise the budget"
        )
    for _ in range(12):
        mid = (lo + hi) / 2
        arch = interpolate_arch(space, mid)
        ms = meter.measure_arch(arch).median_ms
        if ms <= budget_ms:
            lo, best, best_ms = mid, arch, ms
        else:
            hi = mid
    return best, best_ms
