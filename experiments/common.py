"""What the matching experiment scripts (chapters 5–7) share: train a run unless it finished, and mean ± std."""

from __future__ import annotations

import statistics
from pathlib import Path


def ensure_trained(make_config, run: Path) -> Path:
    """Train RUN unless it finished (summary.json is written last); an interrupted run resumes from its last.pt
    rather than being taken for done because an early best.pt exists. make_config: () -> ExperimentConfig, called
    only when training is needed (loading a config may extract nothing, but it is not free)."""
    from imagexplore.matching.train import train

    if not (run / "summary.json").is_file():
        train(make_config(), run, resume="auto", show_progress=False)
    return run


def mean_std(rows: list[dict], keys, digits: int = 2) -> dict:
    """{key: mean, key_std: sample std (0 for one seed)} over the rows that have a number for the key, rounded to
    ``digits`` decimals (2 suits percentages; metrics in [0, 1] need 4)."""
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r and r[k] == r[k]]
        if vals:
            out[k] = round(statistics.fmean(vals), digits)
            out[f"{k}_std"] = round(statistics.stdev(vals), digits) if len(vals) > 1 else 0.0
    return out
