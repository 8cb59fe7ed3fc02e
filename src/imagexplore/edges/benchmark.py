"""The BSDS boundary benchmark (Martin et al.; Arbeláez et al. 2011), reproduced without Matlab, and fast.

Per image and threshold t the Matlab code (``evaluation_bdry_image``) binarises ``pb >= t``, thins the result
with ``bwmorph(.., 'thin', Inf)``, and for every annotator matches the predicted pixels to the annotator's
boundary pixels lying within ``max_dist × image diagonal`` (``correspondPixels``). Its CSA assignment prices an
unmatched pixel at 100 × max_dist, far above any match, so the number of matched pairs is the maximum
cardinality of the bipartite "within reach" graph; we get it from Hopcroft–Karp (scipy) on a pair list that is
built once per annotator and only filtered per threshold. Thinning is a vectorised Guo–Hall two-subiteration
pass over the pixels next to a change (same lookup tables as Matlab). ``collect`` mirrors
``collect_eval_bdry.m`` to the letter (ODS/OIS/area under the PR curve) plus R50 from Dollár's edgesEvalDir.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_flow

from imagexplore.edges.groundtruth import IMAGE_SUFFIXES, load_ground_truth, load_prediction
from imagexplore.errors import ConfigError, DataError

# Neighbours x1..x8 of the thinning papers: E, NE, N, NW, W, SW, S, SE as (dy, dx).
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two subiterations (Lam, Lee & Suen 1992, G1–G3; what bwmorph 'thin' uses)."""
    x = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)
    nxt = np.roll(x, -1, axis=1)  # x_{k+1}, with x9 = x1
    odd, even = x[:, 0::2], x[:, 1::2]
    g1 = (~odd & (even | nxt[:, 1::2])).sum(1) == 1
    n1 = (odd | even).sum(1)
    n2 = (even | nxt[:, 1::2]).sum(1)
    g2 = (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    g3 = ~((x[:, 1] | x[:, 2] | ~x[:, 7]) & x[:, 0])
    g3p = ~((x[:, 5] | x[:, 6] | ~x[:, 3]) & x[:, 4])
    return g1 & g2 & g3, g1 & g2 & g3p


_LUT1, _LUT2 = _thin_luts()


def thin_binary(bmap: np.ndarray) -> np.ndarray:
    """Matlab's ``bwmorph(bmap, 'thin', Inf)``: parallel thinning until a full iteration deletes nothing.

    Each subiteration only re-examines pixels whose neighbourhood changed since the last pass with the same
    table, so the cost follows the number of deletions rather than the image size.
    """
    bmap = np.asarray(bmap, bool)
    h, w = bmap.shape
    a = np.zeros((h + 2, w + 2), np.uint8)
    a[1:-1, 1:-1] = bmap
    a = a.ravel()
    offs = np.array([dy * (w + 2) + dx for dy, dx in _NEIGHBOURS])
    box = np.concatenate([[0], offs])
    cand = np.flatnonzero(a)
    deleted = [np.empty(0, np.intp), np.empty(0, np.intp)]
    k = 0
    while cand.size:
        code = np.zeros(cand.size, np.uint8)
        for bit, off in enumerate(offs):
            code |= a[cand + off] << bit
        dele = cand[(_LUT1, _LUT2)[k % 2][code]]
        a[dele] = 0
        deleted = [deleted[1], dele]
        k += 1
        if k >= 2:
            near = np.zeros(a.size, bool)
            near[(np.concatenate(deleted)[:, None] + box).ravel()] = True
            cand = np.flatnonzero(near & (a == 1))
    return a.reshape(h + 2, w + 2)[1:-1, 1:-1].astype(bool)


def thresholds_of(thresholds: int | Sequence[float] | np.ndarray) -> np.ndarray:
    """n → Matlab's ``linspace(1/(n+1), 1-1/(n+1), n)`` (same rounding); an array is used as given."""
    if np.ndim(thresholds) == 0:
        if isinstance(thresholds, bool) or int(thresholds) != thresholds or int(thresholds) < 1:
            raise ConfigError(f"thresholds must be a positive count or a list of values, got {thresholds!r}")
        n = int(thresholds)
        d1, d2 = 1 / (n + 1), 1 - 1 / (n + 1)
        t = d1 + (np.arange(n) * (d2 - d1)) / max(n - 1, 1)
        t[-1] = d2
        return t
    t = np.asarray(thresholds, np.float64).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise DataError("thresholds must be a non-empty list of finite values")
    return t


def _as_probabilities(pred: np.ndarray) -> np.ndarray:
    """float64 map; values on the 8-bit grid are snapped to k/255 so ``pb >= t`` ties break as in Matlab."""
    pb = np.asarray(pred, np.float64)
    q = pb * 255
    if np.abs(q - np.rint(q)).max(initial=0) < 1e-4:
        pb = np.rint(q) / 255
    return pb


def _offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer pixel offsets with dy² + dx² <= radius² (correspondPixels' test), nearest first."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = dy * dy + dx * dx
    keep = d2 <= radius * radius
    order = np.argsort(d2[keep], kind="stable")
    return dy[keep][order], dx[keep][order], d2[keep][order]


def _pairs(gt: np.ndarray, rank: np.ndarray, offsets) -> tuple[np.ndarray, np.ndarray]:
    """(pred rank, gt index) of every candidate pair, sorted by rank and then by distance."""
    h, w = gt.shape
    gy, gx = np.nonzero(gt)
    dy, dx, d2 = offsets
    py, px = gy[:, None] + dy, gx[:, None] + dx
    ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    r = np.full(py.shape, -1, np.int64)
    r[ok] = rank[py[ok], px[ok]]
    ok &= r >= 0
    gidx = np.broadcast_to(np.arange(gy.size)[:, None], py.shape)[ok]
    dist = np.broadcast_to(d2, py.shape)[ok]
    r = r[ok]
    order = np.lexsort((gidx, dist, r))
    return r[order], gidx[order]


def _match(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> tuple[np.ndarray, int]:
    """Maximum-cardinality matching of (row, col) pairs sorted by row: matched row ids and the matching size.

    Solved as unit-capacity max-flow with Dinic (= Hopcroft–Karp's bound); scipy's own bipartite matcher
    takes seconds on some of these graphs. Nodes: 0 source, then rows, then cols, last the sink.
    """
    if rows.size == 0:
        return rows, 0
    start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    n_rows = start.size
    n = n_rows + n_cols + 2
    indptr = np.concatenate(
        [[0], n_rows + np.r_[start, rows.size], n_rows + rows.size + np.r_[1 : n_cols + 1, n_cols]]
    )
    indices = np.concatenate([np.arange(1, n_rows + 1), n_rows + 1 + cols, np.full(n_cols, n - 1)]).astype(
        np.int32
    )
    g = csr_array((np.ones(indices.size, np.int32), indices, indptr), shape=(n, n))
    flow = maximum_flow(g, 0, n - 1, method="dinic").flow.tocsr()
    lo, hi = flow.indptr[0], flow.indptr[1]
    used = flow.indices[lo:hi][flow.data[lo:hi] > 0] - 1
    return rows[start[used]], int(used.size)


def evaluate_image(
    pred: np.ndarray,
    gts: np.ndarray | Sequence[np.ndarray],
    thresholds: int | Sequence[float] | np.ndarray = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
) -> np.ndarray:
    """Counts (cntR, sumR, cntP, sumP) per threshold, int64 (T, 4), for one edge map against its annotators.

    pred: H×W probabilities in [0, 1]; gts: (A, H, W) boundary maps (or a list of H×W maps).
    """
    pb = _as_probabilities(pred)
    gts = [np.asarray(g, bool) for g in gts]
    if pb.ndim != 2:
        raise DataError(f"prediction must be a 2-D H×W map, got shape {pb.shape}")
    if not gts:
        raise DataError("no ground-truth annotators given; each image needs at least one")
    if any(g.shape != pb.shape for g in gts):
        raise DataError(f"ground-truth size {gts[0].shape} differs from the prediction's {pb.shape}")
    ts = thresholds_of(thresholds)
    h, w = pb.shape
    radius = max_dist * np.hypot(h, w)
    # Candidate pixels: everything any threshold can switch on, ranked by decreasing probability.
    flat = pb.ravel()
    cand = np.flatnonzero(flat >= ts.min())
    cand = cand[np.argsort(-flat[cand], kind="stable")]
    vals = flat[cand]
    rank = np.full((h, w), -1, np.int64)
    rank.ravel()[cand] = np.arange(cand.size)
    offsets = _offsets(radius)
    pairs = [_pairs(g, rank, offsets) for g in gts]
    n_gt = [int(g.sum()) for g in gts]
    out = np.zeros((ts.size, 4), np.int64)
    prev_n, prev = -1, None
    for i, t in enumerate(ts):
        n_on = int(np.searchsorted(-vals, -t, side="right"))  # pixels with pb >= t
        if n_on == prev_n:
            out[i] = prev
            continue
        bmap = np.zeros(h * w, bool)
        bmap[cand[:n_on]] = True
        if thin:
            bmap = thin_binary(bmap.reshape(h, w)).ravel()
        alive = bmap[cand[:n_on]]
        acc = np.zeros(n_on, bool)
        cnt_r = 0
        for (pr, pg), ng in zip(pairs, n_gt):
            stop = int(np.searchsorted(pr, n_on))
            sel = alive[pr[:stop]]
            matched, k = _match(pr[:stop][sel], pg[:stop][sel], ng)
            acc[matched] = True
            cnt_r += k
        prev_n, prev = n_on, (cnt_r, sum(n_gt), int(acc.sum()), int(alive.sum()))
        out[i] = prev
    return out


def _fmeasure(r, p):
    return 2 * p * r / (p + r + ((p + r) == 0))


def _ratio(cnt, tot):
    return cnt / (tot + (tot == 0))


def max_f(ts: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """``maxF`` of collect_eval_bdry.m: best (t, R, P, F) along straight segments between thresholds
    (``d = linspace(0, 1)``, 100 steps), the first strictly better point in Matlab's loop order."""
    d = np.arange(100) / 99
    t = (ts[1:, None] * d + ts[:-1, None] * (1 - d)).ravel()
    ri = (r[1:, None] * d + r[:-1, None] * (1 - d)).ravel()
    pi = (p[1:, None] * d + p[:-1, None] * (1 - d)).ravel()
    t, ri, pi = np.r_[ts[0], t], np.r_[r[0], ri], np.r_[p[0], pi]
    f = _fmeasure(ri, pi)
    k = int(np.argmax(f))
    return float(t[k]), float(ri[k]), float(pi[k]), float(f[k])


def _area_pr(r: np.ndarray, p: np.ndarray) -> float:
    """BSDS ``Area_PR``: precision interpolated on recall 0:0.01:1 (0 outside the curve's range), summed × 0.01.

    Matlab's ``[Ru, indR] = unique(R)`` of that era returns the LAST occurrence of each value."""
    ru, last = np.unique(r[::-1], return_index=True)
    if ru.size < 2:
        return 0.0
    pu = p[::-1][last]
    ri = np.arange(101) * 0.01
    return float(np.interp(ri, ru, pu, left=0.0, right=0.0).sum() * 0.01)


def _r50(r: np.ndarray, p: np.ndarray) -> float:
    """Recall at 50 % precision as Dollár's edgesEvalDir: ``interp1(P(o), R(o), max(P(o(end)), .5))``
    (NaN when every precision exceeds 0.5, as there)."""
    pu, first = np.unique(p, return_index=True)
    q = max(pu[-1], 0.5)
    if pu.size < 2:
        return float(r[first[0]]) if q == pu[0] else float("nan")
    return float(np.interp(q, pu, r[first], left=np.nan, right=np.nan))


def best_counts(counts: np.ndarray) -> np.ndarray:
    """One image's (cntR, sumR, cntP, sumP) at the LAST threshold reaching its max F (uninterpolated): what
    collect_eval_bdry.m sums over images for OIS."""
    r, p = _ratio(counts[:, 0], counts[:, 1]), _ratio(counts[:, 2], counts[:, 3])
    f = _fmeasure(r, p)
    return counts[np.flatnonzero(f == f.max())[-1]]


def dataset_scores(
    thresholds: int | Sequence[float] | np.ndarray, totals: np.ndarray, best: np.ndarray, images: int
) -> dict:
    """ODS, OIS, AP, R50 and the PR curve from sums over images: the (T, 4) count table and the per-image
    `best_counts`. Sums, so shards scored by different processes add up to the single-process result."""
    ts = thresholds_of(thresholds)
    tot, best = np.asarray(totals), np.asarray(best)
    r, p = _ratio(tot[:, 0], tot[:, 1]), _ratio(tot[:, 2], tot[:, 3])
    ods_t, ods_r, ods_p, ods_f = max_f(ts, r, p)
    ois_r, ois_p = float(_ratio(best[0], best[1])), float(_ratio(best[2], best[3]))
    return {
        "ods": ods_f,
        "ois": float(_fmeasure(ois_r, ois_p)),
        "ap": _area_pr(r, p),
        "r50": _r50(r, p),
        "ods_threshold": ods_t,
        "ods_precision": ods_p,
        "ods_recall": ods_r,
        "ois_precision": ois_p,
        "ois_recall": ois_r,
        "images": int(images),
        "thresholds": ts.tolist(),
        "recall": r.tolist(),
        "precision": p.tolist(),
        "f": _fmeasure(r, p).tolist(),
    }


def collect(
    thresholds: int | Sequence[float] | np.ndarray,
    per_image_counts: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
) -> dict:
    """Dataset scores from per-image (T, 4) counts, exactly as collect_eval_bdry.m (+ R50).

    ODS: best F of the summed counts (interpolated between thresholds); OIS: each image's counts at the LAST
    threshold reaching its max F, summed; ap: area under the PR curve (BSDS ``Area_PR``).
    """
    ts = thresholds_of(thresholds)
    counts = [np.asarray(c, np.int64) for c in per_image_counts]
    if not counts:
        raise DataError("no images to score")
    if any(c.shape != (ts.size, 4) for c in counts):
        raise DataError(f"per-image counts must be ({ts.size}, 4) arrays (cntR, sumR, cntP, sumP)")
    per_image = []
    for i, c in enumerate(counts):
        bt, br, bp, bf = max_f(ts, _ratio(c[:, 0], c[:, 1]), _ratio(c[:, 2], c[:, 3]))
        entry = {"threshold": bt, "recall": br, "precision": bp, "f": bf}
        per_image.append(({"name": names[i]} if names is not None else {}) | entry)
    best = np.sum([best_counts(c) for c in counts], axis=0)
    res = dataset_scores(ts, np.sum(counts, axis=0), best, len(counts))
    res["per_image"] = per_image
    return res


def _score_one(args: tuple) -> np.ndarray:
    """Worker: load one (prediction, ground truth) pair, optionally NMS it, and count."""
    pred_path, gt_path, thresholds, use_nms, max_dist = args
    pred = load_prediction(pred_path) if isinstance(pred_path, str | Path) else pred_path
    gts = load_ground_truth(gt_path) if isinstance(gt_path, str | Path) else np.asarray(gt_path, bool)
    if pred.shape != gts.shape[1:]:
        raise DataError(
            f"{pred_path if isinstance(pred_path, str | Path) else 'prediction'}: size "
            f"{pred.shape[0]}×{pred.shape[1]} differs from the ground truth's {gts.shape[1]}×{gts.shape[2]}"
        )
    if use_nms:
        from imagexplore.edges.nms import nms

        pred = nms(pred)
    return evaluate_image(pred, gts, thresholds, max_dist=max_dist)


def _run(jobs: list[tuple], workers: int | None, progress: bool) -> list[np.ndarray]:
    from tqdm import tqdm

    workers = min(workers or os.cpu_count() or 1, len(jobs))
    bar = dict(total=len(jobs), disable=not progress, desc="boundary benchmark", unit="img")
    if workers <= 1:
        return [c for c in tqdm(map(_score_one, jobs), **bar)]
    with ProcessPoolExecutor(workers) as ex:
        return list(tqdm(ex.map(_score_one, jobs), **bar))


def score_arrays(
    preds: Sequence[np.ndarray],
    gts_list: Sequence[np.ndarray],
    thresholds: int | Sequence[float] | np.ndarray = 99,
    nms: bool = False,
    max_dist: float = 0.0075,
    workers: int | None = 1,
    progress: bool = False,
) -> dict:
    """`collect` over in-memory predictions (H×W in [0, 1]) and ground truths ((A, H, W) bool)."""
    check_score_options(thresholds, max_dist, workers)
    if len(preds) != len(gts_list):
        raise DataError(f"{len(preds)} predictions but {len(gts_list)} ground truths; give one per image")
    jobs = [(p, g, thresholds, nms, max_dist) for p, g in zip(preds, gts_list)]
    return collect(thresholds, _run(jobs, workers, progress))


def score_folder(
    pred_dir: str | Path,
    gt_dir: str | Path,
    thresholds: int | Sequence[float] | np.ndarray = 99,
    nms: bool = False,
    max_dist: float = 0.0075,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
) -> dict:
    """Benchmark a folder of edge maps (png/jpg/…) against a folder of ground truths (.mat or .png), by stem.

    Only stems present on both sides are scored; the result says how many (``images``) and which were left out:
    ``unmatched_pred`` / ``unmatched_gt`` (sorted stems; their counts also as ``unmatched_predictions`` /
    ``unmatched_ground_truth``). ``strict=True`` refuses any unmatched file instead. Out-of-range ``thresholds``,
    ``max_dist`` or ``workers`` are a `ConfigError`, checked before any file is read."""
    check_score_options(thresholds, max_dist, workers)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d, flag in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not d.exists():
            raise DataError(f"{flag} {d}: folder not found")
        if not d.is_dir():
            raise DataError(f"{flag} {d}: not a folder")
    preds = {p.stem: p for p in sorted(pred_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    gts: dict[str, Path] = {}
    for p in sorted(gt_dir.iterdir()):
        if p.suffix.lower() in (".mat", *IMAGE_SUFFIXES):
            gts.setdefault(p.stem, p)  # a .mat wins over a same-stem image (sorted: '.mat' < '.png')
    names = sorted(preds.keys() & gts.keys())
    if not names:
        raise DataError(
            f"no prediction in {pred_dir} ({len(preds)} images) has a ground truth with the same file stem "
            f"in {gt_dir} ({len(gts)} .mat/.png files); name them alike, e.g. 2018.png ↔ 2018.mat"
        )
    only_pred, only_gt = sorted(preds.keys() - gts.keys()), sorted(gts.keys() - preds.keys())
    if strict and (only_pred or only_gt):
        raise DataError(
            f"--strict: {unmatched_text(len(names), only_pred, only_gt, 'matched')} "
            f"(every edge map in {pred_dir} needs a ground truth in {gt_dir} with the same stem, and back)"
        )
    jobs = [(preds[n], gts[n], thresholds, nms, max_dist) for n in names]
    res = collect(thresholds, _run(jobs, workers, progress), names=names)
    res["unmatched_predictions"] = len(only_pred)
    res["unmatched_ground_truth"] = len(only_gt)
    res["unmatched_pred"] = only_pred
    res["unmatched_gt"] = only_gt
    return res


def _first(names: Sequence[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f", … (+{len(names) - k})" if len(names) > k else "")


def unmatched_text(
    scored: int, only_pred: Sequence[str], only_gt: Sequence[str], verb: str = "scored"
) -> str:
    """``scored 2 images; 3 edge maps without ground truth: a, b, c; ...`` (one line, the first few stems)."""
    parts = [f"{verb} {scored} image{'' if scored == 1 else 's'}"]
    if only_pred:
        parts.append(f"{len(only_pred)} edge map(s) without ground truth: {_first(only_pred)}")
    if only_gt:
        parts.append(f"{len(only_gt)} ground truth(s) without an edge map: {_first(only_gt)}")
    return "; ".join(parts)


def check_score_options(thresholds, max_dist, workers) -> None:
    """`ConfigError` for thresholds < 1, max_dist not a finite number > 0, or workers < 1 (None = all cores)."""
    thresholds_of(thresholds)
    if isinstance(max_dist, bool) or not isinstance(max_dist, int | float) or not 0 < max_dist < float("inf"):
        raise ConfigError(
            f"max_dist must be a finite number > 0 (a fraction of the diagonal), got {max_dist!r}"
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer (or None: all cores), got {workers!r}")


def plot_pr(result: dict, path: str | Path, label: str | None = None) -> Path:
    """PR curve PNG with iso-F lines, the ODS point marked and ODS/OIS/AP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    r = np.linspace(0.01, 1, 200)
    for f in np.arange(0.1, 1.0, 0.1):
        p = f * r / (2 * r - f)
        ok = (p > 0) & (p <= 1)
        ax.plot(r[ok], p[ok], color="0.85", lw=0.8)
        ax.text(0.995, f / (2 - f), f"{f:.1f}", fontsize=6, color="0.6", ha="right", va="bottom")
    name = f"{label} " if label else ""
    ax.plot(
        result["recall"], result["precision"], lw=2,
        label=f"{name}ODS={result['ods']:.3f} OIS={result['ois']:.3f} AP={result['ap']:.3f}",
    )  # fmt: skip
    ax.plot(result["ods_recall"], result["ods_precision"], "o", color="C3", label="ODS point")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
