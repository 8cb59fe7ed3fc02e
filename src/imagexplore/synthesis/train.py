"""`imagexplore synth train`: data, model and task from a config, run by the shared engine.

Data (`data.name`): a paired set of `synthesis.data.PAIR_DATASETS` (``shapes``, ``aligned``, ``ab-folders``,
``facades``, ``cityscapes``, ``edges2shoes``, ``sketches``, ``tuxpaint-sketch``, ``openclipart-sketch``) for
translation, or a person set of `PERSON_DATASETS` (``persons``: the shapes world's clothed figures with exact
swap truth; ``deepfashion``, ``market``: the pose-transfer layouts) for SwapGAN and its pix2pix baseline.
`data.options` go to the reader; ``jitter`` applies to the training split only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imagexplore.config import ExperimentConfig
from imagexplore.engine import Trainer, seed_everything
from imagexplore.errors import ConfigError
from imagexplore.tasks import bind_config, get_task

PERSON_DATASETS = ("persons", "deepfashion", "market")
MODEL_KINDS = {"pix2pix": "pix2pix", "instantiation_net": "instantiation", "swapgan": "swapgan"}


def model_kind(cfg: ExperimentConfig) -> str:
    if cfg.model.name not in MODEL_KINDS:
        raise ConfigError(f"unknown synth model '{cfg.model.name}'; synth models: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[cfg.model.name]


def is_persons(cfg: ExperimentConfig) -> bool:
    return cfg.data.name in PERSON_DATASETS


def build_split(cfg: ExperimentConfig, split: str, *, train: bool, num_samples: int | None = None):
    """One split of the config's data (training augmentation only when ``train``)."""
    d = cfg.data
    opts = dict(d.options)
    n = num_samples if num_samples is not None else (d.train_samples if train else d.val_samples)
    if is_persons(cfg):
        from imagexplore.synthesis import persons

        if d.name == "persons":
            return persons.SwapPairs(n or 1000, size=d.image_size or 64, seed=d.seed, split=split, **opts)
        reader = persons.DeepFashionPersons if d.name == "deepfashion" else persons.MarketPersons
        if not d.root:
            raise ConfigError(f"dataset '{d.name}' needs data.root (its pose-transfer folder)")
        multiple = int(opts.pop("multiple", 256))
        return PaddedPersons(reader(d.root, split=split, **opts), multiple)
    from imagexplore.synthesis.data import build_pairs

    if not train:
        opts.pop("jitter", None)
    return build_pairs(d.name, d.root, split, opts, size=d.image_size, num_samples=n, seed=d.seed)


class PaddedPersons(torch.utils.data.Dataset):
    """Real persons padded to the generators' size multiple (DeepFashion's 256×176 → 256×256 for U-Net-256):
    images with white (the studio background), pose heat maps and parsing with zeros (background); the pad is
    split evenly left/right (top/bottom), so `synth swap` cuts the same pad back."""

    def __init__(self, base, multiple: int):
        self.base, self.multiple = base, multiple
        for name in ("order", "num_keypoints", "num_labels", "names"):
            if hasattr(base, name):
                setattr(self, name, getattr(base, name))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        for k, v in item.items():
            if not torch.is_tensor(v) or v.dim() < 2:
                continue
            h, w = v.shape[-2:]
            ph, pw = (-h) % self.multiple, (-w) % self.multiple
            if ph or pw:
                pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
                # [-1, 1] images: white; keep masks: 1 (the pad is background, kept); maps and labels: 0
                fill = 1.0 if k.startswith(("I_", "keep_")) else 0.0
                item[k] = torch.nn.functional.pad(v, pad, value=fill)
        return item


def build_datasets(cfg: ExperimentConfig):
    return build_split(cfg, "train", train=True), build_split(cfg, cfg.data.val_split, train=False)


def data_meta(cfg: ExperimentConfig, train_set) -> dict[str, Any]:
    """What a checkpoint must remember of its data: kinds, channels, sizes (for translate / swap / eval)."""
    meta: dict[str, Any] = {"dataset": cfg.data.name, "image_size": cfg.data.image_size}
    if is_persons(cfg):
        meta |= {
            "data_kind": "persons",
            "order": train_set.order,
            "pose_channels": int(train_set.num_keypoints),
            "parsing_labels": int(train_set.num_labels),
        }
    else:
        kinds = (train_set.input_kind, train_set.target_kind)
        meta |= {"data_kind": "pairs", "input_kind": kinds[0], "target_kind": kinds[1]}
        meta["multiple"] = int(getattr(train_set, "multiple", 1))
        world = getattr(getattr(train_set, "scenes", None), "world", None)
        if world is not None and "label" in kinds:  # label colours = the palette of background + the classes
            meta["label_classes"] = int(world.num_classes) + 1
    return meta


def build_model(cfg: ExperimentConfig, num_classes: int = 0, in_chans: int = 3, for_checkpoint=None):
    """The config's synth model; channel counts from the data (at training) or the checkpoint's meta."""
    from imagexplore import models

    meta = for_checkpoint or {}
    kind = model_kind(cfg)
    kw = dict(cfg.model.kwargs)
    persons = meta.get("data_kind") == "persons"
    if kind == "swapgan" and not persons:
        raise ConfigError("swapgan trains on person data (data.name: persons | deepfashion | market)")
    if kind == "instantiation" and persons:
        raise ConfigError("instantiation_net translates paired images; person data is for swapgan / pix2pix")
    if kind == "swapgan":
        kw |= {"pose_channels": meta["pose_channels"], "parsing_labels": meta["parsing_labels"]}
    elif kind == "pix2pix" and persons:
        kw |= {"in_chans": 3 + meta["pose_channels"] + 3, "out_chans": 3}  # I_B ⊕ P_A ⊕ A's kept pixels
    return models.create(cfg.model.name, **kw)


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    from imagexplore.engine.trainer import resume_path
    from imagexplore.synthesis.task import SynthTask

    bind_config(cfg, "synth")
    spec = get_task("synth")
    loss, evaluation = spec.section(cfg, "loss"), spec.section(cfg, "evaluation")
    kind = model_kind(cfg)
    if set(cfg.optimizers) != {"G", "D"}:
        raise ConfigError("a synth config names two optimizers, G (generators) and D (discriminators)")
    resume_path(run_dir, resume)  # a bad --resume is refused before any data is read
    train_set, val_set = build_datasets(cfg)
    meta = data_meta(cfg, train_set) | {"kind": kind, "name": cfg.name}
    seed_everything(cfg.train.seed)  # the initial weights follow the seed alone
    model = build_model(cfg, for_checkpoint=meta)
    task = SynthTask(kind, loss, evaluation, meta)
    trainer = Trainer(cfg, model, task, train_set, val_set, run_dir, show_progress=show_progress)
    return trainer.fit(resume=resume)
