"""The kernels issue 16 replaced, timed against what they replaced in the same run, one thread (ratios printed):

- cutting 14 patches: `features.crop_patches` (separable sparse weights) vs torchvision's `roi_align`, on photos
  decoded at 512 x 384, 1,024 x 768 and 2,048 x 1,536, 224-px patches;
- uint8 HWC -> float CHW: `images.pil_to_tensor` vs numpy's copy of the transposed array then ``/ 255``;
- the signature cosines of 2,000 candidates among 100,000 512-d rows: FAISS's ``fvec_inner_products_by_idx``
  (`search._dot_rows`, rows read in place) vs gathering the rows and ``np.einsum``;
- a forward pass of Lite0 over an image's 14 patches: BatchNorm folded into the convolutions
  (`features.fold_batchnorm`, the default) vs the network as published (``FeatureExtractor(fold=False)``);
- the same folded forward pass in a fresh process with glibc's malloc as `clitools.reuse_freed_memory` sets it
  (what `retrieve extract | build | eval` run with) vs glibc's defaults, two processes of each, interleaved.

    python bench/bench_kernels.py [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align

from imagexplore import clitools  # noqa: F401 - the child processes of forward_in_process call it
from imagexplore.data.images import pil_to_tensor
from imagexplore.retrieval import features
from imagexplore.retrieval.features import crop_patches, load_backbone, patch_boxes
from imagexplore.retrieval.index.search import _dot_rows


def best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls (after one warm-up), in ms: the least disturbed by the machine."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def forward_ms(extractor, size: int, repeats: int) -> float:
    """The fastest forward pass of ``extractor`` over 14 random ``size``-px patches, in ms."""
    x = torch.rand(14, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return best_ms(lambda: extractor(x), repeats)


def unfolded_lite0(size: int):
    """The bundled Lite0 as published: its BatchNorms left as separate layers."""
    import timm

    model = timm.create_model(features._LITE0_ARCH, pretrained=False)
    features._load_weights(model, features._bundled_lite0_path(), features._LITE0_ARCH)
    return features.FeatureExtractor(
        model, {"mid": -2}, size, features._LITE0_MEAN, features._LITE0_STD, fold=False
    )


def forward_in_process(malloc: str, size: int, repeats: int) -> float:
    """`forward_ms` of the folded Lite0 in a fresh process, glibc's malloc as ``malloc`` says (``reuse`` or
    ``default``): the setting is process-wide and cannot be undone, hence a process each."""
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import bench_kernels as b; "
        "torch.set_num_threads(1); "
        "sys.argv[2] == 'reuse' and b.clitools.reuse_freed_memory(); "
        "print(b.forward_ms(b.load_backbone(input_size=int(sys.argv[3])), int(sys.argv[3]), int(sys.argv[4])))"
    )
    args = [sys.executable, "-c", code, str(Path(__file__).parent), malloc, str(size), str(repeats)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="2 repeats, small sizes: a smoke test")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernels.json")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    sizes = [(512, 384)] if args.quick else [(512, 384), (1024, 768), (2048, 1536)]
    for width, height in sizes:
        image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(width))
        boxes = torch.from_numpy(patch_boxes(width, height)).float()
        new = best_ms(lambda image=image, boxes=boxes: crop_patches(image, boxes, 224), repeats)
        old = best_ms(
            lambda image=image, boxes=boxes: roi_align(image[None], [boxes], 224, 1.0, -1, True), repeats
        )
        rows.append({"kernel": "crop_14_patches", "size": f"{width}x{height}", "ms": new, "before_ms": old})
        pil = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))

        def numpy_copy(pil=pil):
            a = np.array(pil, dtype=np.uint8).transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)

        new = best_ms(lambda pil=pil: pil_to_tensor(pil), repeats)
        old = best_ms(numpy_copy, repeats)
        rows.append({"kernel": "to_tensor", "size": f"{width}x{height}", "ms": new, "before_ms": old})
    n = 10_000 if args.quick else 100_000
    sigs = rng.standard_normal((n, 512)).astype(np.float32)
    q = rng.standard_normal(512).astype(np.float32)
    cands = [rng.choice(n, 2000, replace=False) for _ in range(20)]
    new = best_ms(lambda: [_dot_rows(sigs, q, c) for c in cands], repeats) / len(cands)
    old = best_ms(lambda: [np.einsum("ij,j->i", sigs[c], q) for c in cands], repeats) / len(cands)
    rows.append({"kernel": "cosines_2000_of_rows", "size": f"{n}x512", "ms": new, "before_ms": old})
    size = 64 if args.quick else 224
    new = forward_ms(load_backbone(input_size=size), size, repeats)
    old = forward_ms(unfolded_lite0(size), size, repeats)
    rows.append({"kernel": "lite0_forward_folded", "size": f"14x{size}px", "ms": new, "before_ms": old})
    times = {"reuse": [], "default": []}
    for _ in range(1 if args.quick else 2):  # interleaved: the machine's speed drifts
        for malloc in times:
            times[malloc].append(forward_in_process(malloc, size, repeats))
    rows.append(
        {
            "kernel": "lite0_forward_malloc_reuse",
            "size": f"14x{size}px",
            "ms": min(times["reuse"]),
            "before_ms": min(times["default"]),
        }
    )
    for row in rows:
        row["ms"], row["before_ms"] = round(row["ms"], 3), round(row["before_ms"], 3)
        row["speedup"] = round(row["before_ms"] / row["ms"], 2)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['kernel']:>22} {row['size']:>10}: {row['ms']:8.3f} ms (before {row['before_ms']:.3f}, "
                f"x{row['speedup']})"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
