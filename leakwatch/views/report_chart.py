"""The report's charts as PNG bytes: weekly leak rate by outcome, billed share by day.

Pure (no files).

Uses matplotlib's object API on the Agg canvas directly — no pyplot, so no global
figure state and no GUI backend is ever chosen — and only the DejaVu fonts matplotlib
ships, so rendering never looks for fonts on the network or the system.
"""

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leakwatch.core.report_content import LEAK_ORDER, ReportContent

# One colour per leaking outcome, distinguishable for common colour-vision deficiencies
# (Okabe–Ito palette).
OUTCOME_COLOURS = {
    "missing": "#D55E00",
    "unmatched_customer": "#0072B2",
    "unmatched_metric": "#E69F00",
    "duplicate": "#CC79A7",
    "mismatch": "#009E73",
}
CHART_FONT = "DejaVu Sans"


def render_trend_png(content: ReportContent, *, width_px: int = 900, height_px: int = 450) -> bytes:
    """Draw stacked weekly leak rates by outcome, with the total's 95% interval."""
    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    labels = [point.week for point in content.trend]
    positions = list(range(len(labels)))
    bottoms = [0.0] * len(labels)
    for outcome in LEAK_ORDER:
        heights = [point.by_outcome.get(outcome.value, 0.0) * 100 for point in content.trend]
        if not any(heights):
            continue
        axes.bar(
            positions,
            heights,
            bottom=bottoms,
            color=OUTCOME_COLOURS[outcome.value],
            label=outcome.value.replace("_", " "),
            width=0.6,
        )
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    with_rate = [(i, p.leak_rate) for i, p in enumerate(content.trend) if p.leak_rate is not None]
    if with_rate:
        xs = [i for i, _ in with_rate]
        ys = [r.rate * 100 for _, r in with_rate]
        lower = [max(0.0, (r.rate - r.interval.lo) * 100) for _, r in with_rate]
        upper = [max(0.0, (r.interval.hi - r.rate) * 100) for _, r in with_rate]
        axes.errorbar(
            xs,
            ys,
            yerr=[lower, upper],
            fmt="o-",
            color="#222222",
            ecolor="#555555",
            capsize=4,
            linewidth=1.5,
            label="all leaks (95% interval)",
        )
    top = max([*bottoms, *[(r.interval.hi * 100) for _, r in with_rate], 0.0])
    for i, point in enumerate(content.trend):
        if point.decided == 0:
            axes.text(
                i,
                top * 0.02 if top > 0 else 0.02,
                "no data",
                ha="center",
                va="bottom",
                fontsize=9,
                color="#777777",
                family=CHART_FONT,
                rotation=90,
            )
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, fontsize=9, family=CHART_FONT)
    axes.set_ylabel("share of checked events not billed (%)", family=CHART_FONT)
    axes.set_title(
        f"Weekly leak rate by outcome, {labels[0]} – {labels[-1]}" if labels else "Leak rate",
        family=CHART_FONT,
    )
    axes.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    axes.grid(axis="y", color="#dddddd")
    axes.set_axisbelow(True)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize=8, prop={"family": CHART_FONT, "size": 8})
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


METRIC_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def render_billed_png(
    content: ReportContent, *, width_px: int = 900, height_px: int = 380
) -> bytes | None:
    """Draw billed ÷ sent per day for each reconciled metric (100% = all billed)."""
    section = content.billed_vs_sent
    if section is None or not section.by_day:
        return None
    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    days = sorted({r.day for r in section.by_day})
    positions = {day: i for i, day in enumerate(days)}
    metrics = sorted({r.metric for r in section.by_day})
    lowest = 100.0
    for index, metric in enumerate(metrics):
        points = [
            (positions[r.day], r.billed_ratio * 100)
            for r in section.by_day
            if r.metric == metric and r.billed_ratio is not None
        ]
        if not points:
            continue
        lowest = min(lowest, *(y for _, y in points))
        axes.plot(
            [x for x, _ in points],
            [y for _, y in points],
            "o-",
            color=METRIC_COLOURS[index % len(METRIC_COLOURS)],
            label=metric,
            linewidth=1.5,
        )
    axes.axhline(100, color="#555555", linewidth=1, linestyle="--")
    axes.set_xticks(list(positions.values()))
    axes.set_xticklabels([d.strftime("%a %d") for d in days], fontsize=9, family=CHART_FONT)
    axes.set_ylabel("billed ÷ sent (%)", family=CHART_FONT)
    axes.set_title("Billed share of sent usage, by day (exact)", family=CHART_FONT)
    axes.set_ylim(min(lowest - 2, 95), 105)
    axes.grid(axis="y", color="#dddddd")
    axes.set_axisbelow(True)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower left", fontsize=8, prop={"family": CHART_FONT, "size": 8})
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
