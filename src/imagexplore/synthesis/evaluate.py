"""`synth eval | translate | swap`: a trained synth checkpoint scored on a split, applied to files, or used to
swap two persons' clothes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagexplore.errors import ConfigError, DataError


def load_synth(checkpoint: str | Path, device: str = "cpu"):
    """(model in eval mode on ``device``, cfg, meta) of a `synth train` checkpoint; other tasks' are refused."""
    from imagexplore.engine.checkpoint import restore_model

    model, cfg, meta = restore_model(checkpoint, task="synth")
    return model.to(device).eval(), cfg, meta


def _size_multiple(model) -> int:
    g = model.G
    nets = [g] if not isinstance(g, torch.nn.ModuleDict) else list(g.values())
    return max(int(getattr(n, "size_multiple", 1)) for n in nets)


def evaluate(
    checkpoint: str | Path | None = None,
    *,
    config: str | Path | None = None,
    baseline: str | None = None,
    overrides: list[str] | None = None,
    split: str = "test",
    num_samples: int | None = None,
    batch_size: int = 16,
    fd: bool = True,
    fid_weights: str | Path | None = None,
    segmenter: str | Path | None = None,
    samples: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Flat metrics of a checkpoint on ``split`` of the data it was trained on — or of a trivial ``baseline``
    (`synthesis.baselines`: ``identity`` for paired data, ``copy-paste`` for persons) on the data of ``config``:
    ``ssim psnr l1`` (on [0, 1] images), ``fd_lite0`` (Fréchet distance on the bundled EfficientNet-Lite0's
    pooled features — not FID), ``fid`` with ``fid_weights``; label→photo with a ``segmenter`` (a `segment train`
    checkpoint of the same domain): ``fcn_pixel_acc fcn_mean_acc fcn_miou``; photo→label on the shapes world:
    ``label_pixel_acc label_mean_acc label_miou``; the instantiation network: ``diversity_l1`` (mean pairwise L1
    of ``samples`` samples per input); persons: ``mask_l1`` against the exact swap."""
    from tqdm import tqdm

    from imagexplore.synthesis.metrics import TranslationMetrics, label_palette
    from imagexplore.synthesis.task import fcn_options, generate, true_labels
    from imagexplore.synthesis.train import build_split, data_meta

    if (checkpoint is None) == (baseline is None):
        raise ConfigError("evaluate a checkpoint, or a baseline on a config's data (not both)")
    if checkpoint is not None:
        model, cfg, meta = load_synth(checkpoint, device)
        data = build_split(cfg, split, train=False, num_samples=num_samples or cfg.data.val_samples)
    else:
        from imagexplore.config import load_config
        from imagexplore.tasks import bind_config

        if config is None:
            raise ConfigError("a baseline is evaluated on the data of a config: give --config")
        cfg = bind_config(load_config(config, overrides or []), "synth")
        data = build_split(cfg, split, train=False, num_samples=num_samples or cfg.data.val_samples)
        meta = data_meta(cfg, data) | {"kind": baseline}
    persons = meta.get("data_kind") == "persons"
    produce = _baseline(baseline, meta) if baseline else None
    options: dict[str, Any] = {"fd": fd, "fid_weights": fid_weights}
    if not persons and "label_classes" not in meta:  # a checkpoint from before label_classes was recorded
        world = getattr(getattr(data, "scenes", None), "world", None)
        if world is not None:
            meta["label_classes"] = int(world.num_classes) + 1
    segmenter = segmenter or (cfg.evaluation or {}).get("segmenter")
    if segmenter is not None and meta.get("input_kind") != "label":
        raise ConfigError("--segmenter scores label → photo models (the FCN-score); this one is not")
    options |= fcn_options(segmenter, meta, device)
    label_out = not persons and meta.get("target_kind") == "label" and "label_classes" in meta
    if label_out:
        options["palette"] = label_palette(meta["label_classes"])
    if persons:
        options["mask_labels"] = list(range(meta["parsing_labels"]))
    metrics = TranslationMetrics(**options)
    metrics.reset()
    kind = meta["kind"]
    n_samples = samples if samples is not None else (cfg.evaluation or {}).get("samples", 3)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    torch.manual_seed(0)  # the instantiation network's samples: the same numbers every run
    with torch.inference_mode():
        for batch in tqdm(loader, desc="synth eval", disable=not progress):
            if persons:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            else:
                batch = [t.to(device) for t in batch]
            if produce is not None:
                out = produce(batch)
            else:
                out = generate(
                    model, kind, batch, persons, samples=n_samples if kind == "instantiation" else 0
                )
            if persons:
                parsing = batch.get("truth_parsing", batch["parsing_A"])
                metrics.update(out["output"], out["target"], parsing=parsing)
                continue
            labels = true_labels(out, meta) if ("segmenter" in options or label_out) else None
            metrics.update(out["output"], out["target"], labels=labels, samples=out.get("samples"))
    res = metrics.compute()
    source = str(checkpoint) if checkpoint is not None else f"baseline {baseline} on {cfg.name}"
    return {"checkpoint": source, "split": split, "kind": kind, "dataset": meta.get("dataset")} | res


def _baseline(name: str, meta: dict):
    """The output maker of a trivial baseline, as `task.generate` is for a model."""
    from imagexplore.synthesis import baselines
    from imagexplore.synthesis.persons import PERSON_ORDERS
    from imagexplore.synthesis.task import swap_target

    kind = meta["data_kind"]
    if name not in baselines.BASELINES[kind]:
        valid = ", ".join(baselines.BASELINES[kind])
        raise ConfigError(f"baseline {name!r} does not apply to {kind} data; baselines for it: {valid}")
    if kind == "pairs":
        return lambda batch: {"input": batch[0], "output": baselines.identity(batch), "target": batch[1]}
    clothes = tuple(label for zone in PERSON_ORDERS[meta["order"]].clothes for label in zone)
    return lambda batch: {"output": baselines.copy_paste(batch, clothes), "target": swap_target(batch)}


def _to_signed(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pad a 3×H×W (or C×H×W) tensor up to multiples of ``multiple``; the pad, for `unpad`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x[None], pad, mode=mode)[0]
    return x, pad


def translate_array(
    model,
    meta: dict,
    image: np.ndarray,
    *,
    samples: int = 1,
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> list[np.ndarray]:
    """One H×W×3 uint8 image → ``samples`` H×W×3 uint8 translations at its own size (reflect-padded to the
    generator's size multiple, then cut back). The instantiation network draws each sample's style code
    z ~ N(0, I) from ``generator`` (CPU; default: torch's global one); pix2pix's samples differ by test-time
    dropout (global RNG), switched on for ``samples`` > 1 and off again after. The in-memory core of
    `translate` (and of the explorer's translate panel); ``model`` and ``meta`` as `load_synth` returns them."""
    from imagexplore.synthesis.data import unpad
    from imagexplore.synthesis.gallery import to_uint8
    from imagexplore.synthesis.networks import set_dropout_at_test

    if meta.get("data_kind") == "persons":
        raise ConfigError("this checkpoint swaps persons' clothes: use imagexplore synth swap")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"expected an H×W×3 uint8 image, got {image.dtype} {image.shape}")
    dropout = samples > 1 and meta["kind"] == "pix2pix"  # pix2pix's only noise is its dropout
    x, pad = _pad_to(_to_signed(image), _size_multiple(model))
    x = x[None].to(device)
    try:
        if dropout:
            set_dropout_at_test(model.G, True)
        with torch.inference_mode():
            if meta["kind"] == "instantiation":
                z = torch.randn(samples, model.G.G.style_dim, generator=generator).to(device)
                ys = model.G("G", x.expand(samples, -1, -1, -1), z)
            else:
                ys = torch.cat([model.G(x) for _ in range(samples)])
    finally:
        if dropout:
            set_dropout_at_test(model.G, False)
    return [to_uint8(unpad(y, pad)).permute(1, 2, 0).numpy() for y in ys]


def translate(
    checkpoint: str | Path,
    images: list[str | Path],
    out_dir: str | Path,
    *,
    samples: int = 1,
    device: str = "cpu",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Each image translated by the checkpoint's generator at the image's own size (reflect-padded to the
    generator's size multiple, then cut back): ``OUT/<stem>.png``, or ``<stem>_<k>.png`` for k = 1..samples.
    Samples differ by the style code z ~ N(0, I) (instantiation network) or by test-time dropout (pix2pix).
    Each image goes through `translate_array`."""
    from PIL import Image

    from imagexplore.data.images import load_image

    model, _, meta = load_synth(checkpoint, device)
    if meta.get("data_kind") == "persons":
        raise ConfigError("this checkpoint swaps persons' clothes: use imagexplore synth swap")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    written = []
    for path in images:
        path = Path(path)
        ys = translate_array(
            model, meta, np.asarray(load_image(path)), samples=samples, generator=gen, device=device
        )
        files = []
        for k, y in enumerate(ys):
            name = f"{path.stem}.png" if samples == 1 else f"{path.stem}_{k + 1}.png"
            Image.fromarray(y).save(out_dir / name)
            files.append(str(out_dir / name))
        written.append({"input": str(path), "outputs": files})
    return written


def swap_array(model, meta: dict, person, clothes, *, device: str = "cpu") -> np.ndarray:
    """Person A (``person``, a `persons.Person`) wearing person B's (``clothes``) clothes: H×W×3 uint8 at A's
    size. Both must have A's size and the checkpoint's keypoint order. A SwapGAN checkpoint runs
    G2(G1(I_B ⊕ P_A) ⊕ S_A' ⊕ K_A); its pix2pix baseline G(I_B ⊕ P_A ⊕ K_A). The in-memory core of `swap_clothes` (and of
    the explorer's swap panel); ``model`` and ``meta`` as `load_synth` returns them."""
    from imagexplore.synthesis.data import unpad
    from imagexplore.synthesis.gallery import to_uint8
    from imagexplore.synthesis.persons import keep_mask, parsing_onehot, pose_heatmaps, swap_clothes_parsing
    from imagexplore.synthesis.task import generate

    if meta.get("data_kind") != "persons":
        raise ConfigError("this checkpoint translates images: use imagexplore synth translate")
    order = meta["order"]
    for who in (person, clothes):
        if who.order != order:
            raise DataError(f"a person of keypoint order {who.order!r}; this checkpoint takes {order!r}")
    a, b = person, clothes
    if a.image.shape != b.image.shape:
        raise DataError(
            f"the clothes' person is {b.image.shape[1]}×{b.image.shape[0]}, the person "
            f"{a.image.shape[1]}×{a.image.shape[0]}; give two persons of the same size"
        )
    size = a.image.shape[:2]
    multiple = _size_multiple(model)
    labels = meta["parsing_labels"]
    s_a = swap_clothes_parsing(a.parsing, b.parsing, order)
    image_a, keep_a = _to_signed(a.image), keep_mask(a.parsing, s_a, order=order)
    parts = {
        "I_A": image_a,
        "I_B": _to_signed(b.image),
        "I_A_kept": image_a * keep_a,
        "keep_A": keep_a,
        "P_A": torch.from_numpy(pose_heatmaps(a.keypoints, size)),
        "S_A_with_B_clothes": parsing_onehot(s_a, labels),
    }
    padded = {}
    pad = (0, 0, 0, 0)
    for k, v in parts.items():
        padded[k], pad = _pad_to(v, multiple)
    batch = {k: v[None].to(device) for k, v in padded.items()}
    with torch.inference_mode():
        y = generate(model, meta["kind"], batch, True)["output"][0]
    return to_uint8(unpad(y, pad)).permute(1, 2, 0).numpy()


def swap_clothes(
    checkpoint: str | Path,
    person: str | Path,
    clothes: str | Path,
    out: str | Path,
    *,
    person_pose=None,
    person_parsing=None,
    clothes_pose=None,
    clothes_parsing=None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Person A (``person``) wearing person B's (``clothes``) clothes → ``out`` (PNG, A's size). Each person is
    our on-disk form: the image with ``NAME.pose.json`` and ``NAME.parsing.png`` beside it (the flags name other
    files). A SwapGAN checkpoint runs G2(G1(I_B ⊕ P_A) ⊕ S_A' ⊕ K_A); its pix2pix baseline G(I_B ⊕ P_A ⊕ K_A) (`swap_array`)."""
    from PIL import Image

    from imagexplore.synthesis.persons import read_person

    model, _, meta = load_synth(checkpoint, device)
    if meta.get("data_kind") != "persons":
        raise ConfigError("this checkpoint translates images: use imagexplore synth translate")
    order = meta["order"]
    a = read_person(person, person_pose, person_parsing, order=order)
    b = read_person(clothes, clothes_pose, clothes_parsing, order=order)
    if a.image.shape != b.image.shape:
        raise DataError(
            f"{clothes}: size {b.image.shape[1]}×{b.image.shape[0]} differs from {person}'s "
            f"{a.image.shape[1]}×{a.image.shape[0]}; give two persons of the same size"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(swap_array(model, meta, a, b, device=device)).save(out)
    return {"person": str(person), "clothes": str(clothes), "output": str(out), "kind": meta["kind"]}
