"""Dataset readers on tiny fixtures in the exact official layouts, and the classification dataset builder."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.data.cifar import CIFAR
from imagexplore.data.classification import CLASSIFICATION_DATASETS, build_classification_dataset
from imagexplore.data.digits import Digits
from imagexplore.data.fashion_mnist import CLASSES as FASHION_CLASSES
from imagexplore.data.fashion_mnist import FashionMNIST
from imagexplore.data.imagefolder import ImageFolder
from imagexplore.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------------- CIFAR
CIFAR10_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]
PER_BATCH = 4


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _dump(path: Path, obj) -> None:
    # Protocol 2, as the official files (written by Python 2's cPickle) use.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(parent: Path) -> Path:
    """An extracted ``cifar-10-batches-py/`` with 5 train batches and a test batch of PER_BATCH images each."""
    d = parent / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        data = _rows(PER_BATCH, i)
        if i == 1:
            data[0] = 0
            # One known pixel per channel in image 0: R at (y=0, x=1), G at (y=5, x=7), B at (y=31, x=31).
            data[0, 0 * 1024 + 0 * 32 + 1] = 11
            data[0, 1 * 1024 + 5 * 32 + 7] = 22
            data[0, 2 * 1024 + 31 * 32 + 31] = 33
        labels = [(i + k) % 10 for k in range(PER_BATCH)]
        _dump(d / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": labels, b"data": data})
    _dump(d / "test_batch", {b"labels": [9, 8, 7], b"data": _rows(3, 99)})
    _dump(d / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": PER_BATCH})
    return d


def make_cifar100(parent: Path) -> Path:
    d = parent / "cifar-100-python"
    d.mkdir(parents=True)
    fine = [f"fine{i}".encode() for i in range(100)]
    coarse = [f"coarse{i}".encode() for i in range(20)]
    _dump(d / "train", {b"fine_labels": [0, 99, 50], b"coarse_labels": [0, 19, 10], b"data": _rows(3, 1)})
    _dump(d / "test", {b"fine_labels": [5, 6], b"coarse_labels": [1, 2], b"data": _rows(2, 2)})
    _dump(d / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse})
    return d


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def test_cifar10_pixel_layout_and_labels(tmp_path):
    folder = make_cifar10(tmp_path)
    ds = CIFAR(folder, "train")
    assert len(ds) == 5 * PER_BATCH and ds.num_classes == 10 and ds.in_chans == 3
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and y == 1
    nz = torch.nonzero(x).tolist()
    assert nz == [[0, 0, 1], [1, 5, 7], [2, 31, 31]]  # channel, row, column
    assert torch.allclose(x[nz[0][0], nz[0][1], nz[0][2]], torch.tensor(11 / 255))
    assert torch.allclose(x[1, 5, 7], torch.tensor(22 / 255)) and torch.allclose(
        x[2, 31, 31], torch.tensor(33 / 255)
    )
    # batches are concatenated in order data_batch_1..5
    raw = pickle.loads((folder / "data_batch_3").read_bytes(), encoding="bytes")
    x9, y9 = ds[2 * PER_BATCH + 1]
    assert y9 == raw[b"labels"][1]
    assert torch.equal((x9 * 255).round().to(torch.uint8).flatten(), torch.from_numpy(raw[b"data"][1]))
    test = CIFAR(folder, "test")
    assert len(test) == 3 and [test[i][1] for i in range(3)] == [9, 8, 7]


def test_cifar10_archive_and_parent_roots(tmp_path):
    folder = make_cifar10(tmp_path / "src")
    (tmp_path / "arch").mkdir()
    archive = tar_gz(folder, tmp_path / "arch" / "cifar-10-python.tar.gz")
    ref = CIFAR(folder, "train")
    for root in (archive, archive.parent, folder.parent):
        ds = CIFAR(root, "train")
        assert (
            len(ds) == len(ref) and torch.equal(ds.images, ref.images) and torch.equal(ds.labels, ref.labels)
        )
        assert ds.classes == ref.classes
    assert CIFAR(archive, "test").labels.tolist() == [9, 8, 7]


def test_cifar100_fine_and_coarse_from_folder_and_archive(tmp_path):
    folder = make_cifar100(tmp_path)
    archive = tar_gz(folder, tmp_path / "cifar-100-python.tar.gz")
    for root in (folder, archive):
        ds = CIFAR(root, "train", num_classes=100)
        assert ds.num_classes == 100 and ds.classes[99] == "fine99" and ds.labels.tolist() == [0, 99, 50]
        coarse = CIFAR(root, "test", num_classes=100, labels="coarse")
        assert (
            coarse.num_classes == 20 and coarse.classes[0] == "coarse0" and coarse.labels.tolist() == [1, 2]
        )
    with pytest.raises(ConfigError):
        CIFAR(folder, "train", num_classes=10, labels="coarse")


def test_cifar_layout_errors(tmp_path):
    with pytest.raises(DataError) as e:
        CIFAR(tmp_path, "train")
    assert str(e.value) == (
        f"CIFAR-10 not found at {tmp_path}: expected cifar-10-python.tar.gz or a folder "
        "cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta"
    )
    with pytest.raises(
        DataError, match=rf"CIFAR-100 not found at {tmp_path}: expected cifar-100-python.tar.gz"
    ):
        CIFAR(tmp_path, "train", num_classes=100)

    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=rf"folder {folder} is incomplete: missing data_batch_3"):
        CIFAR(tmp_path, "train")

    not_tar = tmp_path / "cifar-10-python.tar.gz.bak"
    not_tar.write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"{not_tar} is not a tar archive"):
        CIFAR(not_tar)

    # an archive missing a member names the archive and the member
    other = make_cifar10(tmp_path / "o")
    (other / "test_batch").unlink()
    archive = tar_gz(other, tmp_path / "partial.tar.gz")
    with pytest.raises(DataError, match=rf"CIFAR archive {archive} lacks test_batch"):
        CIFAR(archive, "test")

    bad = make_cifar10(tmp_path / "b")
    _dump(bad / "test_batch", {b"labels": [1], b"data": np.zeros((1, 100), np.uint8)})
    with pytest.raises(DataError, match=r"test_batch: expected uint8 data N×3072"):
        CIFAR(bad, "test")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_refuses_non_numpy_pickles(tmp_path, monkeypatch):
    folder = make_cifar10(tmp_path)
    _dump(folder / "test_batch", {b"labels": [0], b"data": _Evil()})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|nt)\.system"):
        CIFAR(folder, "test")
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------- Fashion-MNIST
def _idx(path: Path, magic: int, arr: np.ndarray, gz: bool) -> None:
    header = np.array([magic, *arr.shape], dtype=">u4").tobytes()
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def make_fashion(folder: Path, gz: bool = True, n_train: int = 6, n_test: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(folder / f"{prefix}-images-idx3-ubyte", 2051, rng.integers(0, 256, (n, 28, 28)), gz)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", 2049, np.arange(n) % 10, gz)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path, gz):
    folder = make_fashion(tmp_path / "fashion-mnist", gz=gz)
    for root in (folder, tmp_path):  # the folder itself or its parent
        ds = FashionMNIST(root, "train")
        assert len(ds) == 6 and ds.in_chans == 1 and ds.classes == list(FASHION_CLASSES)
        x, y = ds[3]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 3
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    raw = gzip.decompress((folder / name).read_bytes()) if gz else (folder / name).read_bytes()
    expect = np.frombuffer(raw, np.uint8, offset=16).reshape(6, 28, 28)[3]
    assert torch.equal((ds[3][0][0] * 255).round().to(torch.uint8), torch.from_numpy(expect.copy()))
    assert len(FashionMNIST(folder, "test")) == 3


def test_fashion_mnist_default_root_from_env(tmp_path, monkeypatch):
    make_fashion(tmp_path / "fashion-mnist")
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(tmp_path))
    assert len(FashionMNIST(split="test")) == 3


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(DataError, match=rf"Fashion-MNIST not found at {tmp_path}: expected"):
        FashionMNIST(tmp_path)

    folder = make_fashion(tmp_path / "a", gz=False)
    _idx(folder / "train-images-idx3-ubyte", 2049, np.zeros((6, 28, 28)), gz=False)
    with pytest.raises(
        DataError,
        match=rf"idx file {folder / 'train-images-idx3-ubyte'} has magic number 2049, expected 2051",
    ):
        FashionMNIST(folder)

    folder = make_fashion(tmp_path / "b", gz=False)
    p = folder / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-2])  # header says 6 labels, 4 present
    with pytest.raises(DataError, match=rf"idx file {p} holds 4 bytes of data, its header says \(6,\) = 6"):
        FashionMNIST(folder)

    folder = make_fashion(tmp_path / "c", gz=True)
    _idx(folder / "train-labels-idx1-ubyte", 2049, np.arange(5) % 10, gz=True)
    with pytest.raises(DataError, match=rf"Fashion-MNIST train at {folder}: 6 images but 5 labels"):
        FashionMNIST(folder)

    folder = make_fashion(tmp_path / "d", gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=rf"incomplete at {folder}: missing t10k-labels-idx1-ubyte"):
        FashionMNIST(folder, "test")

    folder = make_fashion(tmp_path / "e", gz=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=rf"cannot read idx file {folder / 'train-images-idx3-ubyte.gz'}"):
        FashionMNIST(folder)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_fashion_mnist_real_debian_package(monkeypatch):
    if not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist not installed: run make data")
    monkeypatch.delenv("IMAGEXPLORE_DATA", raising=False)
    train, test = FashionMNIST(split="train"), FashionMNIST(split="test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.root == REAL_FASHION
    for ds in (train, test):
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        assert torch.bincount(ds.labels).tolist() == [len(ds) // 10] * 10  # balanced classes
    x, _ = train[0]
    assert x.shape == (1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5


# ---------------------------------------------------------------------------------------------- ImageFolder
def make_imagefolder(root: Path, bad: bool = True) -> Path:
    """cat/: RGB JPEG, RGBA PNG, grey PNG, truncated JPEG; dog/: 16-bit PNG, text named .jpg, nested JPEG."""
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "cat" / "a.jpg")
    Image.new("RGBA", (30, 30), (255, 0, 0, 0)).save(root / "cat" / "b_rgba.png")
    Image.new("L", (20, 25), 90).save(root / "cat" / "c_grey.png")
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(root / "dog" / "d16.png")
    Image.new("RGB", (33, 17), (0, 0, 200)).save(root / "dog" / "more" / "e.jpg")
    if bad:
        good = (root / "cat" / "a.jpg").read_bytes()
        (root / "cat" / "aa_truncated.jpg").write_bytes(good[: len(good) // 2])
        (root / "dog" / "notes.jpg").write_text("not an image\n")
    return root


def test_imagefolder_skip_counts_and_loads_all_modes(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "imgs")
    with caplog.at_level(logging.WARNING, logger="imagexplore.data"):
        ds = ImageFolder(root, image_size=16, on_bad_file="skip")
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.in_chans == 3
    assert ds.num_skipped == 2 and {p.name for p in ds.skipped} == {"aa_truncated.jpg", "notes.jpg"}
    assert len([r for r in caplog.records if "skipped 2 unreadable" in r.getMessage()]) == 1
    assert [p.name for p, _ in ds.samples] == ["a.jpg", "b_rgba.png", "c_grey.png", "d16.png", "e.jpg"]
    assert ds.targets == [0, 0, 0, 1, 1]
    items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 16, 16) and x.dtype == torch.float32 for x, _ in items)
    assert torch.allclose(items[1][0], torch.ones(3, 16, 16))  # transparent red on white → white
    assert torch.allclose(items[2][0], torch.full((3, 16, 16), 90 / 255))  # grey → RGB
    assert torch.allclose(items[3][0], torch.ones(3, 16, 16))  # 16-bit full scale → 1.0
    grey = ImageFolder(root, on_bad_file="skip", in_chans=1)
    x, _ = grey[4]
    assert grey.in_chans == 1 and x.shape == (1, 17, 33)  # native size when image_size is None


def test_imagefolder_fail_names_first_bad_file(tmp_path):
    root = make_imagefolder(tmp_path / "imgs")
    with pytest.raises(DataError, match=rf"cannot read image {root / 'cat' / 'aa_truncated.jpg'}: "):
        ImageFolder(root)
    # without the scan, the bad file fails when it is loaded, still naming it
    ds = ImageFolder(root, verify=False)
    idx = [p.name for p, _ in ds.samples].index("notes.jpg")
    with pytest.raises(DataError, match="notes.jpg"):
        ds[idx]
    with pytest.raises(ConfigError):
        ImageFolder(root, on_bad_file="skip", verify=False)


def test_imagefolder_wrong_layouts(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "x.png")
    with pytest.raises(DataError, match=rf"{flat} has 1 images directly inside and no class sub-folders"):
        ImageFolder(flat)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"image folder {empty} is empty: expected root/<class>/<images>"):
        ImageFolder(empty)
    with pytest.raises(DataError, match=rf"image folder {tmp_path / 'missing'} not found"):
        ImageFolder(tmp_path / "missing")
    noimg = tmp_path / "noimg"
    (noimg / "cls").mkdir(parents=True)
    (noimg / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=rf"no images in the class folders of {noimg}"):
        ImageFolder(noimg)
    allbad = tmp_path / "allbad"
    (allbad / "cls").mkdir(parents=True)
    (allbad / "cls" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=rf"no readable images in {allbad}"):
        ImageFolder(allbad, on_bad_file="skip")
    with pytest.raises(ConfigError, match="in_chans"):
        ImageFolder(flat, in_chans=4)


# ------------------------------------------------------------------------------------------------- Digits
def test_digits_split():
    train, test = Digits("train"), Digits("test")
    assert (len(train), len(test)) == (1437, 360) and train.in_chans == 1 and train.num_classes == 10
    assert torch.bincount(test.labels).min() >= 35  # stratified: every digit ~36 times
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y < 10
    assert train.images.max() == 16 and float(max(train[i][0].max() for i in range(50))) == 1.0
    # deterministic and disjoint: no test image appears in train
    assert torch.equal(Digits("test").images, test.images)
    train_set = {
        bytes(im.numpy().tobytes()) + bytes([int(lab)]) for im, lab in zip(train.images, train.labels)
    }
    overlap = sum(
        bytes(im.numpy().tobytes()) + bytes([int(lab)]) in train_set
        for im, lab in zip(test.images, test.labels)
    )
    assert overlap < 5  # load_digits has a few exact duplicates; a leaking split would give 360


# ------------------------------------------------------------------------------------------------ builder
def test_builder_names_and_errors(tmp_path):
    assert set(CLASSIFICATION_DATASETS) == {
        "shapes",
        "cifar10",
        "cifar100",
        "fashion_mnist",
        "digits",
        "imagefolder",
        "imagenet",
    }
    with pytest.raises(ConfigError) as e:
        build_classification_dataset("mnist")
    assert "unknown classification dataset 'mnist'" in str(e.value) and "fashion_mnist" in str(e.value)
    with pytest.raises(ConfigError, match="split must be one of train, val, test"):
        build_classification_dataset("digits", "dev")
    with pytest.raises(ConfigError, match="needs a root"):
        build_classification_dataset("imagefolder")


def test_builder_in_memory_datasets(tmp_path, monkeypatch):
    make_cifar10(tmp_path)
    make_cifar100(tmp_path)
    make_fashion(tmp_path / "fashion-mnist")
    c10 = build_classification_dataset("cifar10", "val", root=tmp_path)
    assert len(c10) == 3 and c10.num_classes == 10  # val → test
    c100 = build_classification_dataset("cifar100", "train", root=tmp_path, image_size=16)
    assert c100.num_classes == 100 and c100[0][0].shape == (3, 16, 16)
    fm = build_classification_dataset("fashion-mnist", "test", root=tmp_path)
    assert len(fm) == 3 and fm.in_chans == 1
    # without a root, CIFAR is looked for under $IMAGEXPLORE_DATA (and ~/data, ~/.cache/imagexplore)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(tmp_path))
    assert len(build_classification_dataset("cifar10", "test")) == 3
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="cifar100 not found under .IMAGEXPLORE_DATA"):
        build_classification_dataset("cifar100")

    a = build_classification_dataset("digits", "train", num_samples=100, seed=3)
    b = build_classification_dataset("digits", "train", num_samples=100, seed=3)
    c = build_classification_dataset("digits", "train", num_samples=100, seed=4)
    assert len(a) == 100 and a.indices == b.indices and a.indices != c.indices
    assert (a.num_classes, a.in_chans, a.classes[3]) == (10, 1, "3")
    x, y = a[0]
    assert torch.equal(x, a.dataset[a.indices[0]][0]) and y == a.dataset[a.indices[0]][1]
    a.transform = lambda t: t * 0  # setting the transform on the subset reaches the reader
    assert a[0][0].sum() == 0 and a.dataset.transform is a.transform


def test_builder_imagefolder_splits(tmp_path):
    make_imagefolder(tmp_path / "ds" / "train", bad=False)
    (tmp_path / "ds" / "val" / "dog").mkdir(parents=True)  # val lacks "cat": indices must still follow train
    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "val" / "dog" / "v.png")
    tr = build_classification_dataset("imagefolder", "train", root=tmp_path / "ds", image_size=8)
    va = build_classification_dataset("imagefolder", "test", root=tmp_path / "ds", image_size=8)
    assert len(tr) == 5 and len(va) == 1 and va.classes == ["cat", "dog"] and va[0][1] == 1
    flat = build_classification_dataset("imagefolder", "val", root=tmp_path / "ds" / "train", num_samples=2)
    assert len(flat) == 2 and flat.num_skipped == 0

    make_imagefolder(tmp_path / "in" / "train", bad=True)
    (tmp_path / "in" / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "val" / "ILSVRC2012_val_00000001.JPEG")
    net = build_classification_dataset("imagenet", "train", root=tmp_path / "in", on_bad_file="skip")
    assert net.num_skipped == 2 and len(net) == 5
    with pytest.raises(DataError, match="valprep"):
        build_classification_dataset("imagenet", "val", root=tmp_path / "in")
    with pytest.raises(DataError, match=rf"ImageNet not found at {tmp_path}"):
        build_classification_dataset("imagenet", "train", root=tmp_path)


def test_builder_shapes_calls_the_procedural_world(monkeypatch):
    calls = []

    class FakeShapes:
        def __init__(self, num_samples, size=32, seed=0, split="train"):
            calls.append((num_samples, size, seed, split))

    monkeypatch.setitem(
        sys.modules, "imagexplore.data.shapes", types.SimpleNamespace(ShapesClassification=FakeShapes)
    )
    build_classification_dataset("shapes")
    build_classification_dataset("shapes", "val", image_size=64, seed=7)
    build_classification_dataset("shapes", "test", num_samples=10)
    assert calls == [(2000, 32, 0, "train"), (500, 64, 7, "val"), (10, 32, 0, "test")]
