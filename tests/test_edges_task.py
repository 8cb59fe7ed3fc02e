"""The training-time evaluator equals the benchmark: same ODS/OIS/AP whether images come one by one or in
shards whose sums are added (as under torchrun)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagexplore.edges.benchmark import collect, evaluate_image
from imagexplore.edges.nms import nms
from imagexplore.edges.task import BoundaryEvaluator


def _case(seed: int):
    rng = np.random.default_rng(seed)
    gts = np.zeros((3, 40, 50), bool)
    gts[:, 10, 5:45] = True
    gts[1, 30, 5:45] = True
    gts[2, 10:35, 25] = True
    prob = np.clip(rng.random((40, 50)) * 0.3 + 0.7 * np.any(gts, 0) * rng.random((40, 50)), 0, 1)
    return prob.astype(np.float32), gts


@pytest.mark.parametrize("use_nms", [False, True])
def test_evaluator_equals_collect_and_shards_add_up(use_nms):
    cases = [_case(s) for s in range(4)]
    counts = [evaluate_image(nms(p) if use_nms else p, g, thresholds=15) for p, g in cases]
    want = collect(15, counts)
    one = BoundaryEvaluator(thresholds=15, nms=use_nms)
    for p, g in cases:
        one.update(torch.from_numpy(p)[None], torch.from_numpy(g)[None])
    got = one.compute()
    # two "ranks", each with half the images: their summed state gives the same numbers
    a, b = BoundaryEvaluator(thresholds=15, nms=use_nms), BoundaryEvaluator(thresholds=15, nms=use_nms)
    for k, (p, g) in enumerate(cases):
        (a if k % 2 else b).update(torch.from_numpy(p)[None], torch.from_numpy(g)[None])
    summed = a._compute({k: a.state[k] + b.state[k] for k in a.state})
    for key in ("ods", "ois", "ap"):
        assert got[key] == pytest.approx(want[key], abs=1e-12)
        assert summed[key] == pytest.approx(want[key], abs=1e-12)
    assert got["images"] == 4
