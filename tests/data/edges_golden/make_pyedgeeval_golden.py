"""Regenerate the pyEdgeEval cross-check cases (needs `pip install -e '.[bench]'`; not a test).

Each case: synthetic soft edge maps (blurred shapes-world boundaries + texture responses + missed parts,
quantised to 8 bits) against 3–5 jittered annotators; pyEdgeEval 0.2.8's in-memory evaluation (thinning on,
NMS off) gives the reference scores. Writes pyedgeeval_<case>.npz (inputs) and pyedgeeval_golden.json.
Run: .venv/bin/python tests/data/edges_golden/make_pyedgeeval_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyEdgeEval.common.binary_label import calculate_metrics, evaluate_boundaries_threshold_multiple_gts
from scipy.ndimage import gaussian_filter

from imagexplore.data.shapes import ShapesWorld

HERE = Path(__file__).parent
# name: (number of images, height, width, annotators, thresholds)
CASES = {
    "mid99": (2, 160, 240, 3, 99),
    "mid25": (2, 200, 300, 5, 25),
    "bsds_size25": (1, 321, 481, 5, 25),
    "bsds_size99": (1, 321, 481, 4, 99),
}


def synthetic(seed: int, h: int, w: int, annotators: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 H×W soft edge map, bool A×H×W annotators) from tiled 128-px shapes-world scenes."""
    world = ShapesWorld(seed=seed, size=128, num_annotators=annotators)
    rows, cols = -(-h // 128), -(-w // 128)
    scenes = [world.render(k, ("edges", "annotators")) for k in range(rows * cols)]
    edges = np.block([[scenes[r * cols + c]["edges"] for c in range(cols)] for r in range(rows)])[:h, :w]
    gts = np.stack(
        [
            np.block([[scenes[r * cols + c]["annotators"][a] for c in range(cols)] for r in range(rows)])[
                :h, :w
            ]
            for a in range(annotators)
        ]
    )
    rng = np.random.default_rng(seed)
    soft = gaussian_filter(edges.astype(float), 1.2) * 2.5 * rng.uniform(0.4, 1.0, edges.shape)
    soft *= gaussian_filter(rng.random(edges.shape), 6) > 0.45  # missed parts
    soft += 0.5 * np.clip(gaussian_filter(rng.standard_normal(edges.shape), 2) * 3, 0, None)  # texture
    return np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8), gts


def main() -> None:
    out = {}
    for case_i, (name, (n, h, w, a, nt)) in enumerate(CASES.items()):
        preds, gts = zip(*(synthetic(100 * case_i + k, h, w, a) for k in range(n)))
        np.savez_compressed(HERE / f"pyedgeeval_{name}.npz", preds=np.stack(preds), gts=np.stack(gts))
        thresholds = np.linspace(1 / (nt + 1), 1 - 1 / (nt + 1), nt)

        def one(sample, thresholds=thresholds):
            return evaluate_boundaries_threshold_multiple_gts(
                thresholds, sample["pred"].astype(np.float64) / 255, list(sample["gts"]), max_dist=0.0075
            )

        samples = [{"name": str(k), "pred": p, "gts": g} for k, (p, g) in enumerate(zip(preds, gts))]
        _, _, res = calculate_metrics(one, nt, samples, nproc=1)
        out[name] = {
            "thresholds": nt,
            "ODS": float(res["ODS_f1"]),
            "OIS": float(res["OIS_f1"]),
            "AUC": float(res["AUC"]),
        }
        print(name, out[name])
    (HERE / "pyedgeeval_golden.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
