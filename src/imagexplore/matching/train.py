"""`imagexplore match train`: a caption set's cached features (extracted once, by content) → RRF-Net (or the plain
two-branch net, T = 0) with the bi-rank or a VSE++ loss, on the shared engine.

A match config's `data:` names the caption set (`data.name`: karpathy | precomputed | caption-folder | shapes |
tuxpaint | openclipart, `data.root`) and, in `data.options`, the feature encoders — `image_encoder` (default
lite0), `text_encoder` (default minilm), their options `image_options` / `text_options`, `train_split` (default
train), `cache` (a folder for the feature caches; default `$IMAGEXPLORE_CACHE/match`, else
~/.cache/imagexplore/match) — and any reader option (e.g. shapes' `num_images`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from imagexplore import models
from imagexplore.config import ExperimentConfig
from imagexplore.engine import Trainer, seed_everything
from imagexplore.engine.trainer import resume_path
from imagexplore.errors import ConfigError
from imagexplore.matching.task import MatchingTask, PairFeatures
from imagexplore.tasks import bind_config, get_task

MATCH_KEYS = (
    "image_encoder",
    "text_encoder",
    "image_options",
    "text_options",
    "train_split",
    "cache",
    "sampler",
)
DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER = "lite0", "minilm"


def cache_root(options: dict[str, Any] | None = None) -> Path:
    given = (options or {}).get("cache")
    if given:
        return Path(given)
    env = os.environ.get("IMAGEXPLORE_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "imagexplore") / "match"


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the matching keys of data.options, the rest: the reader's options)."""
    mine = {k: v for k, v in options.items() if k in MATCH_KEYS}
    return mine, {k: v for k, v in options.items() if k not in MATCH_KEYS}


def encoders_from_options(mine: dict[str, Any]):
    from imagexplore.matching.encoders import image_encoder, text_encoder

    return (
        image_encoder(
            mine.get("image_encoder", DEFAULT_IMAGE_ENCODER), **dict(mine.get("image_options") or {})
        ),
        text_encoder(mine.get("text_encoder", DEFAULT_TEXT_ENCODER), **dict(mine.get("text_options") or {})),
    )


def options_for_split(options: dict[str, Any], split: str) -> dict[str, Any]:
    """Reader options with per-split values resolved: `num_images: {train: 1000, val: 100}` gives the split's
    own value (an option keyed by split names that lacks this split is left out: the reader's default)."""
    out = {}
    for key, value in options.items():
        if (
            isinstance(value, dict)
            and value
            and set(value) <= {"train", "val", "test", "all"}
            and key != "split_sizes"
        ):
            if split in value:
                out[key] = value[split]
        else:
            out[key] = value
    return out


def split_features(
    name,
    root,
    split,
    reader_options,
    image_enc,
    text_enc,
    cache: Path,
    progress=True,
    shard=None,
    captions=None,
):
    """The FeatureCache of one split of a caption set, extracted once (keyed by its items and encoders); with
    `shard`, this rank's part (a folder path until every rank is done). `captions`: the split, already read."""
    from imagexplore.matching.cache import cached_features
    from imagexplore.matching.data import read_caption_set

    if captions is None:
        captions = read_caption_set(name, root=root, split=split, **options_for_split(reader_options, split))
    if len(captions) == 0:
        raise ConfigError(f"data: the {split} split of {name} has no captions")
    return cached_features(captions, image_enc, text_enc, cache, progress=progress, shard=shard)


def config_features(cfg: ExperimentConfig, split: str, progress: bool = True):
    """The FeatureCache of one split of a config's caption set, with the config's encoders (cached by content)."""
    mine, reader = split_options(dict(cfg.data.options))
    image_enc, text_enc = encoders_from_options(mine)
    return split_features(
        cfg.data.name, cfg.data.root, split, reader, image_enc, text_enc, cache_root(mine), progress
    )


def build_datasets(cfg: ExperimentConfig, progress: bool = True):
    d = cfg.data
    mine, reader = split_options(dict(d.options))
    train_split = mine.get("train_split", "train")
    # a learned GRU (tokens) or a bag of words (bow): the vocabulary comes from the training captions only
    if mine.get("text_encoder") in ("tokens", "bow"):
        from imagexplore.matching.data import read_caption_set

        train_captions = read_caption_set(
            d.name, root=d.root, split=train_split, **options_for_split(reader, train_split)
        )
        mine = mine | {
            "text_options": dict(mine.get("text_options") or {}) | {"train_captions": train_captions.captions}
        }
    image_enc, text_enc = encoders_from_options(mine)
    cache = cache_root(mine)
    train_cache = split_features(d.name, d.root, train_split, reader, image_enc, text_enc, cache, progress)
    val_cache = split_features(d.name, d.root, d.val_split, reader, image_enc, text_enc, cache, progress)
    if train_cache.text_kind == "tokens":
        unk, words = val_cache.unknown_words, val_cache.words
        print(
            f"[match] vocabulary: {len(text_enc.vocabulary)} ids from the {len(train_cache.captions)} training "
            f"captions; {unk} of {words} words of the {d.val_split} captions are unknown ({100 * unk / max(words, 1):.1f} %) → <unk>",
            file=sys.stderr,
        )
    return PairFeatures(train_cache), PairFeatures(val_cache)


# model.kwargs that configure a learned stem (not the model): a GRU over word ids, a small CNN over pixels
STEM_KEYS = {
    "image": {"cnn_channels": "channels"},
    "text": {"word_dim": "word_dim", "gru_hidden": "gru_hidden", "gru_pooling": "pooling"},
}


def planned_specs(cfg: ExperimentConfig) -> tuple[dict, dict]:
    """Stand-in encoder specs of a config (before any extraction): enough to build its stems at a tiny size."""
    opts = cfg.data.options
    image = {
        "modality": "image",
        "name": opts.get("image_encoder", DEFAULT_IMAGE_ENCODER),
        "size": 8,
        "dim": 1,
    }
    text = {"modality": "text", "name": opts.get("text_encoder", DEFAULT_TEXT_ENCODER), "dim": 4}
    return image, text


def build_model(
    cfg: ExperimentConfig,
    num_classes: int = 0,
    in_chans: int = 0,
    *,
    for_checkpoint=None,
    dims=None,
    specs=None,
):
    """cfg.model (default rrf_net) for features of `dims` = (image_dim, text_dim) from encoders `specs` (a pixels
    or tokens encoder gets its learned stem inside the branch), or as a checkpoint's meta records them."""
    from imagexplore.matching.stems import build_stem

    if for_checkpoint is not None:
        dims = (for_checkpoint["image_dim"], for_checkpoint["text_dim"])
        specs = (for_checkpoint["image_encoder"], for_checkpoint["text_encoder"])
        num_classes = len(for_checkpoint.get("classes") or [])
    if dims is None or specs is None:
        raise ValueError("build_model needs the feature dims and the encoder specs")
    name = cfg.model.name if cfg.model.name != "simple_cnn" else "rrf_net"
    if name == "rrf_gru_net":  # the GRU variant's former name: rrf_net with a tokens stem
        name = "rrf_net"
    kwargs = dict(cfg.model.kwargs)
    for side, spec in zip(("image", "text"), specs, strict=True):
        options = {opt: kwargs.pop(key) for key, opt in STEM_KEYS[side].items() if key in kwargs}
        stem = build_stem(side, spec, **options)
        if stem is not None:
            kwargs[f"{side}_stem"] = stem
    if name == "jmc_net":
        kwargs["num_classes"] = num_classes
    return models.create(name, image_dim=int(dims[0]), text_dim=int(dims[1]), **kwargs)


def model_kind(cfg: ExperimentConfig) -> str:
    """rrf (RRF-Net and the plain net), cyclematch or jmc: what the task's loss and evaluation do."""
    return {"cyclematch_net": "cyclematch", "jmc_net": "jmc"}.get(cfg.model.name, "rrf")


def training_classes(cfg: ExperimentConfig, train_set) -> list[str]:
    """The class names of a JMC run: the training images' labels, sorted; refused when the set has none."""
    labels = train_set.cache.labels
    if not labels:
        raise ConfigError(
            f"{cfg.model.name} needs class labels, and caption set {cfg.data.name!r} has none (labelled sets: "
            "openclipart, tuxpaint, shapes, cub, flowers, food101, pascal-sentences, a caption folder of class folders)"
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(
            f"caption set {cfg.data.name!r}: its training labels have one class ({classes[0]!r}); JMC needs two or more"
        )
    return classes


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    bind_config(cfg, "match")  # a config of another task is refused; val/rsum picks the best checkpoint
    spec = get_task("match")
    loss_fn = spec.section(cfg, "loss").build()
    evaluation = spec.section(cfg, "evaluation")
    resume_from = resume_path(run_dir, resume)  # checked before any feature is extracted
    # the model's options are checked now too, on a tiny stand-in (the real dims come with the data)
    kind = model_kind(cfg)
    build_model(cfg, 2, dims=(1, 4), specs=planned_specs(cfg))
    train_set, val_set = build_datasets(cfg, progress=show_progress is not False)
    classes = None
    if kind == "jmc":  # items carry their image's class; the classes are the training labels
        classes = training_classes(cfg, train_set)
        train_set, val_set = PairFeatures(train_set.cache, classes), PairFeatures(val_set.cache, classes)
    seed_everything(cfg.train.seed)  # before the model exists: its initial weights depend on the seed alone
    model = build_model(
        cfg,
        len(classes or []),
        dims=(train_set.image_dim, train_set.text_dim),
        specs=(train_set.cache.image_spec, train_set.cache.text_spec),
    )
    mine, reader = split_options(dict(cfg.data.options))
    meta = {
        "kind": kind,
        "dataset": cfg.data.name,
        "image_dim": train_set.image_dim,
        "text_dim": train_set.text_dim,
        "image_encoder": train_set.cache.image_spec,
        "text_encoder": train_set.cache.text_spec,
        "reader_options": reader,
        "batch_size": cfg.data.batch_size,
    }
    if classes is not None:
        meta["classes"] = classes
    if kind == "cyclematch":
        meta["space_dims"] = model.space_dims()
    task = MatchingTask(
        loss_fn, meta, evaluation.chunk, mine.get("sampler", "shuffle"), spec.section(cfg, "loss"), evaluation
    )
    trainer = Trainer(cfg, model, task, train_set, val_set, run_dir, show_progress=show_progress)
    return trainer.fit(resume=resume_from or False)
