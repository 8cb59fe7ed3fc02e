"""Bidirectional retrieval metrics for image-text matching: R@K, median and mean rank, R@sum (thesis ch. 5).

A similarity matrix is M×N: M images (rows), N captions (columns); ``caption_image[c]`` is the row of caption c's
image. Any number of captions per image is allowed, in any order.

- **Image→text**: an image ranks all N captions; its rank is the 1-based position of the best-ranked of its own
  captions. An image without any caption is skipped (it counts in neither the recalls nor the ranks).
- **Text→image**: a caption ranks the M images; its rank is the 1-based position of its image.

**Ties are pessimistic**: a non-matching item whose similarity *equals* the best matching one counts as ranked
above it, i.e. rank = 1 + #(non-matching items with similarity ≥ the matching one). Ties among an image's own
captions cost nothing (only its best caption matters). NaN similarities never rank above anything.

Ranks are counted with comparisons, not sorted: the matching similarity is found first, then the items scoring
at least as high are counted, which is O(M·N) and bounded in memory when done by blocks of rows
(`embedding_recalls`). Keys of the result: ``i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_r1 t2i_r5 t2i_r10
t2i_medr t2i_meanr rsum`` (recalls in percent, ranks 1-based, medr the plain median, which may end in .5).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["coco_1k_folds", "embedding_recalls", "ensemble_similarity", "recall_metrics"]

# image rows per block when the matching similarities are computed from embeddings (see `_positives`)
_POS_BLOCK = 256


def _caption_image(caption_image, m: int, device) -> Tensor:
    ci = torch.as_tensor(
        np.asarray(caption_image) if not isinstance(caption_image, Tensor) else caption_image
    )
    if ci.dim() != 1 or ci.numel() == 0:
        raise ValueError(f"caption_image must be a non-empty 1-D array, got shape {tuple(ci.shape)}")
    if ci.dtype.is_floating_point or ci.dtype == torch.bool or ci.is_complex():
        raise ValueError(f"caption_image must hold integer image rows, got {ci.dtype}")
    ci = ci.to(device=device, dtype=torch.long)
    if int(ci.min()) < 0 or int(ci.max()) >= m:
        raise ValueError(f"caption_image values must lie in 0..{m - 1} (one per image row)")
    return ci


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


class _Layout:
    """Captions grouped by image: the captions of image rows [r0, r1) are ``order[bounds[r0]:bounds[r1]]``."""

    def __init__(self, ci: Tensor, m: int):
        self.ci = ci
        self.order = torch.argsort(ci, stable=True)
        self.bounds = torch.searchsorted(ci[self.order], torch.arange(m + 1, device=ci.device)).tolist()

    def captions(self, r0: int, r1: int) -> Tensor:
        return self.order[self.bounds[r0] : self.bounds[r1]]


def _ranks(
    blocks: Iterable[tuple[int, Tensor]], pos: Tensor, layout: _Layout, m: int
) -> tuple[Tensor, Tensor]:
    """1-based ranks from row blocks ``(r0, S[r0:r1])`` of the similarity matrix and the matching similarity
    ``pos[c]`` of every caption: (i2t ranks, length M, NaN for images without captions; t2i ranks, length N)."""
    ci = layout.ci
    n = ci.numel()
    i2t = torch.full((m,), float("nan"), dtype=torch.float64, device=ci.device)
    above = torch.zeros(n, dtype=torch.float64, device=ci.device)  # images ≥ each caption's own, own included
    buf = None
    for r0, s in blocks:
        b = s.shape[0]
        r1 = r0 + b
        if buf is None or buf.shape[0] < b:
            buf = torch.empty_like(s)
        out = buf[:b]
        caps = layout.captions(r0, r1)
        local = ci[caps] - r0
        own = s[local, caps]  # the block's own values of its matching entries
        best = torch.full((b,), -float("inf"), dtype=s.dtype, device=s.device)
        best = best.scatter_reduce(0, local, own, reduce="amax")
        # image→text: captions scoring ≥ the image's best caption, minus the image's own captions among them
        ge_best = torch.ge(s, best[:, None], out=out).sum(1, dtype=torch.float64)
        own_ge = torch.bincount(local, weights=(own >= best[local]).to(torch.float64), minlength=b)
        has = torch.bincount(local, minlength=b) > 0
        i2t[r0:r1] = torch.where(has, 1 + ge_best - own_ge, i2t[r0:r1])
        # text→image: images scoring ≥ the caption's own image (the own row is taken off at the end)
        above += torch.ge(s, pos[None, :], out=out).sum(0, dtype=torch.float64)
        above[caps] -= (own >= pos[caps]).to(torch.float64)
    return i2t, 1 + above


def _summary(i2t: Tensor, t2i: Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    res: dict[str, float] = {}
    for name, r in (("i2t", i2t[~torch.isnan(i2t)]), ("t2i", t2i)):
        r = r.cpu().numpy()
        for k in ks:
            res[f"{name}_r{k}"] = float(100.0 * np.mean(r <= k))
        res[f"{name}_medr"] = float(np.median(r))
        res[f"{name}_meanr"] = float(np.mean(r))
    res["rsum"] = float(sum(res[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    return res


def recall_metrics(sims, caption_image, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@K both ways, median and mean rank and R@sum of an M×N similarity matrix (numpy or torch).

    ``caption_image``: length-N ints, the image row (0..M−1) of each caption. See the module docstring for the
    rank and tie conventions. Works by blocks of rows, so it needs one extra block of memory, not M×N.
    """
    ks = _check_ks(ks)
    s = sims if isinstance(sims, Tensor) else torch.as_tensor(np.asarray(sims))
    if s.dim() != 2 or not s.dtype.is_floating_point:
        raise ValueError(f"sims must be a 2-D float matrix, got {tuple(s.shape)} {s.dtype}")
    m, n = s.shape
    ci = _caption_image(caption_image, m, s.device)
    if ci.numel() != n:
        raise ValueError(f"caption_image has {ci.numel()} entries for {n} caption columns")
    s = s.detach()
    pos = s[ci, torch.arange(n, device=s.device)]
    step = max(1, (1 << 24) // max(n, 1))
    blocks = ((r0, s[r0 : r0 + step]) for r0 in range(0, m, step))
    return _summary(*_ranks(blocks, pos, _Layout(ci, m), m), ks)


def _as_members(emb) -> list[Tensor]:
    members = list(emb) if isinstance(emb, list | tuple) else [emb]
    if not members:
        raise ValueError("an ensemble needs at least one embedding matrix")
    out = []
    for e in members:
        if not isinstance(e, Tensor):
            a = np.asarray(e)
            e = torch.as_tensor(a if a.flags.writeable else a.copy())  # memory-mapped caches are read-only
        t = e.detach()
        if t.dim() != 2 or not t.dtype.is_floating_point:
            raise ValueError(f"embeddings must be 2-D float matrices, got {tuple(t.shape)} {t.dtype}")
        out.append(t)
    return out


def _joint(img_emb, txt_emb) -> tuple[Tensor, Tensor]:
    """One (image, text) matrix pair whose products are the ensemble's mean similarities: the members'
    embeddings side by side, the image side divided by the number of members."""
    imgs, txts = _as_members(img_emb), _as_members(txt_emb)
    if len(imgs) != len(txts):
        raise ValueError(f"{len(imgs)} image embedding matrices for {len(txts)} text embedding matrices")
    for a, b in zip(imgs, txts):
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"image and text embeddings differ in width: {a.shape[1]} vs {b.shape[1]}")
        if a.shape[0] != imgs[0].shape[0] or b.shape[0] != txts[0].shape[0]:
            raise ValueError("ensemble members must embed the same images and captions")
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in imgs + txts])
    img = torch.cat([t.to(dtype) for t in imgs], dim=1)
    txt = torch.cat([t.to(dtype) for t in txts], dim=1)
    if len(imgs) > 1:
        img = img / len(imgs)
    return img.contiguous(), txt.contiguous()


def ensemble_similarity(img_emb, txt_emb) -> Tensor:
    """The M×N similarity of (already normalised) embeddings: ``img_emb @ txt_emb.T``; given equal-length lists
    of matrices (an ensemble, e.g. RRF-Net with T = 1..4), the mean of the members' similarity matrices.
    Computed exactly as `embedding_recalls` computes it, so `recall_metrics` on it gives the same numbers."""
    img, txt = _joint(img_emb, txt_emb)
    return img @ txt.T


def _positives(img: Tensor, txt: Tensor, layout: _Layout, m: int) -> Tensor:
    """``pos[c] = img[caption_image[c]] · txt[c]`` by small block products (image rows with their captions):
    a matrix product, like the blocks it is compared with, at a few per cent of the full product's cost."""
    pos = torch.empty(txt.shape[0], dtype=img.dtype, device=img.device)
    for r0 in range(0, m, _POS_BLOCK):
        r1 = min(m, r0 + _POS_BLOCK)
        caps = layout.captions(r0, r1)
        if caps.numel():
            pos[caps] = (img[r0:r1] @ txt[caps].T)[layout.ci[caps] - r0, torch.arange(caps.numel())]
    return pos


def _blocks(img: Tensor, txt: Tensor, chunk: int) -> Iterator[tuple[int, Tensor]]:
    txt_t = txt.T
    for r0 in range(0, img.shape[0], chunk):
        yield r0, img[r0 : r0 + chunk] @ txt_t


def embedding_recalls(
    img_emb, txt_emb, caption_image, ks: Sequence[int] = (1, 5, 10), chunk: int = 2048
) -> dict[str, float]:
    """`recall_metrics` of ``img_emb @ txt_emb.T`` (cosine of normalised M×D and N×D embeddings) without the M×N
    matrix: blocks of ``chunk`` image rows × N captions, two such blocks alive at a time.

    ``img_emb`` / ``txt_emb`` may be equal-length lists of matrices: an ensemble whose similarity is the mean of
    the members' (`ensemble_similarity`). The numbers equal `recall_metrics(ensemble_similarity(...))` except
    where a non-matching similarity lies within float rounding of the matching one (products of different shapes
    may round differently), which may then count as a tie or not.
    """
    ks = _check_ks(ks)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    img, txt = _joint(img_emb, txt_emb)
    m = img.shape[0]
    ci = _caption_image(caption_image, m, img.device)
    if ci.numel() != txt.shape[0]:
        raise ValueError(f"caption_image has {ci.numel()} entries for {txt.shape[0]} captions")
    layout = _Layout(ci, m)
    pos = _positives(img, txt, layout, m)
    return _summary(*_ranks(_blocks(img, txt, chunk), pos, layout, m), ks)


def coco_1k_folds(
    img_emb,
    txt_emb,
    caption_image,
    folds: int = 5,
    fold_size: int = 1000,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 2048,
    recalls=None,
) -> dict[str, float]:
    """The COCO-1K protocol: the mean over ``folds`` folds of ``fold_size`` images, the images taken in order
    (fold f = image rows [f·fold_size, (f+1)·fold_size)), each fold with its images' captions only. Returns the
    keys of `recall_metrics`, each the mean over the folds (rsum is then the sum of the mean recalls). Images
    beyond folds·fold_size are not used; fewer images is an error. Embeddings may be ensembles as in
    `embedding_recalls`."""
    if folds < 1 or fold_size < 1:
        raise ValueError(f"folds and fold_size must be positive, got {folds}, {fold_size}")
    img, txt = _joint(img_emb, txt_emb)
    m = img.shape[0]
    if m < folds * fold_size:
        raise ValueError(f"{folds} folds of {fold_size} images need {folds * fold_size} images, got {m}")
    ci = _caption_image(caption_image, m, img.device)
    if ci.numel() != txt.shape[0]:
        raise ValueError(f"caption_image has {ci.numel()} entries for {txt.shape[0]} captions")
    runs = []
    for f in range(folds):
        lo, hi = f * fold_size, (f + 1) * fold_size
        keep = (ci >= lo) & (ci < hi)
        if not bool(keep.any()):
            raise ValueError(f"fold {f} (images {lo}..{hi - 1}) has no caption")
        # `_joint` of a single pair is the pair itself, so the ensemble scaling is not applied twice
        if recalls is not None:  # another scoring of one fold (CycleMatch's adaptive fusion)
            runs.append(recalls(img[lo:hi], txt[keep], (ci[keep] - lo).numpy()))
            continue
        runs.append(embedding_recalls(img[lo:hi], txt[keep], ci[keep] - lo, ks=ks, chunk=chunk))
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
