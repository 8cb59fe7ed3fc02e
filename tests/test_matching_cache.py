"""The matching feature cache: real Lite0 + MiniLM on a tiny caption folder, checksums, resume, shards, tokens."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.cache import FeatureCache, cached_features, extract_features
from imagexplore.matching.data import read_caption_set
from imagexplore.matching.encoders import (
    GRUTextEncoder,
    Vocabulary,
    build_encoder,
    image_encoder,
    text_encoder,
)

CAPTIONS = {
    "red": ["A red square.", "Something red"],
    "blue": ["A blue square."],
    "green": ["A green square.", "Grass-coloured block", "green"],
    "stripes": ["Black and white stripes."],
    "dots": ["White dots on black."],
}


@pytest.fixture(scope="module")
def caption_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}
    for name, caps in CAPTIONS.items():
        if name in colours:
            img = Image.new("RGB", (64, 48), colours[name])
        else:
            a = np.zeros((48, 64, 3), np.uint8)
            if name == "stripes":
                a[:, ::8] = 255
            else:
                a[::8, ::8] = 255
            img = Image.fromarray(a)
        img.save(root / f"{name}.png")
        (root / f"{name}.txt").write_text("\n".join(caps) + "\n")
    return read_caption_set("caption-folder", root)


@pytest.fixture(scope="module")
def encoders():
    return image_encoder("lite0"), text_encoder("minilm")


def test_extract_load_checksums(caption_set, encoders, tmp_path):
    ienc, tenc = encoders
    out = extract_features(caption_set, ienc, tenc, tmp_path / "c", batch_size=2, progress=False)
    cache = FeatureCache.load(out)
    assert cache.image_feats.shape == (5, 1280) and cache.text_feats.shape == (8, 384)
    assert cache.image_feats.dtype == np.float32 and isinstance(cache.image_feats, np.memmap)
    np.testing.assert_allclose(np.linalg.norm(cache.text_feats, axis=1), 1.0, atol=1e-5)
    assert (
        cache.captions == caption_set.captions
        and cache.caption_image.tolist() == caption_set.caption_image.tolist()
    )
    assert cache.image_spec["name"] == "lite0" and cache.text_spec["name"] == "minilm"
    assert len(cache.image_spec["weights_sha256"]) == 16
    assert not (out / "progress.json").exists()
    # features agree with the encoders run directly, and captions land near their own image's other captions
    np.testing.assert_allclose(cache.image_feats[:2], ienc.encode(caption_set.images[:2]), atol=1e-5)
    sims = cache.text_feats @ cache.text_feats.T
    at = caption_set.captions.index
    assert (
        sims[at("A red square."), at("A blue square.")]
        > sims[at("A red square."), at("White dots on black.")]
    )
    # the same run again is a no-op; another encoder into the same folder is refused
    assert extract_features(caption_set, ienc, tenc, out, batch_size=2, progress=False) == out
    tok = text_encoder("tokens", train_captions=caption_set.captions)
    with pytest.raises(DataError, match="another caption set or encoder"):
        extract_features(caption_set, ienc, tok, out, progress=False)
    # a changed byte is found; a folder without its manifest is incomplete
    arr = np.load(out / "images.npy", mmap_mode="r+")
    arr[0, 0] += 1.0
    arr.flush()
    del arr
    with pytest.raises(DataError) as exc:
        FeatureCache.load(out)
    assert "incomplete or changed" in str(exc.value) and "re-run match extract" in str(exc.value)
    FeatureCache.load(out, verify=False)
    (out / "manifest.json").unlink()
    with pytest.raises(DataError, match="incomplete or changed"):
        FeatureCache.load(out)


class _Killed(Exception):
    pass


def test_resume_after_kill_is_identical(caption_set, encoders, tmp_path, monkeypatch):
    ienc, tenc = encoders
    whole = FeatureCache.load(
        extract_features(caption_set, ienc, tenc, tmp_path / "whole", 2, progress=False)
    )
    calls = {"images": 0, "texts": 0}
    real_i, real_t = ienc.encode, tenc.encode

    def dying(kind, real):
        def encode(items, rows=None):
            calls[kind] += 1
            if calls[kind] == 2:
                raise _Killed
            return real(items, rows)

        return encode

    out = tmp_path / "resumed"
    monkeypatch.setattr(ienc, "encode", dying("images", real_i))
    with pytest.raises(_Killed):  # dies after the first image chunk
        extract_features(caption_set, ienc, tenc, out, 2, progress=False)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["images"] == 2 and not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="incomplete"):
        FeatureCache.load(out)
    monkeypatch.setattr(ienc, "encode", real_i)
    monkeypatch.setattr(tenc, "encode", dying("texts", real_t))
    with pytest.raises(_Killed):  # resumes the images, dies after the first caption chunk
        extract_features(caption_set, ienc, tenc, out, 2, progress=False)
    assert json.loads((out / "progress.json").read_text())["texts"] == 2
    assert calls["images"] == 2  # the first chunk was not encoded again
    monkeypatch.setattr(tenc, "encode", real_t)
    resumed = FeatureCache.load(extract_features(caption_set, ienc, tenc, out, 2, progress=False))
    np.testing.assert_array_equal(resumed.image_feats, whole.image_feats)
    np.testing.assert_array_equal(resumed.text_feats, whole.text_feats)


def test_shards_merge_to_the_single_run(caption_set, encoders, tmp_path):
    ienc, tenc = encoders
    whole = FeatureCache.load(
        extract_features(caption_set, ienc, tenc, tmp_path / "whole", 2, progress=False)
    )
    out = tmp_path / "sharded"
    for rank in (1, 2, 0):  # rank 0 last: it merges
        extract_features(caption_set, ienc, tenc, out, 2, progress=False, shard=(rank, 3))
    assert (out / "manifest.json").exists() and not (out / "shards").exists()
    merged = FeatureCache.load(out)
    np.testing.assert_array_equal(merged.image_feats, whole.image_feats)
    np.testing.assert_array_equal(merged.text_feats, whole.text_feats)
    out2 = tmp_path / "sharded2"
    for rank in (0, 1):  # rank 0 first: load() merges once the others are done
        extract_features(caption_set, ienc, tenc, out2, 2, progress=False, shard=(rank, 2))
    np.testing.assert_array_equal(FeatureCache.load(out2).image_feats, whole.image_feats)
    with pytest.raises(ConfigError, match="shard rank 3"):
        extract_features(caption_set, ienc, tenc, out2, 2, progress=False, shard=(3, 2))


def test_cached_by_content(caption_set, encoders, tmp_path):
    ienc, tenc = encoders
    a = cached_features(caption_set, ienc, tenc, tmp_path, progress=False)
    b = cached_features(caption_set, ienc, tenc, tmp_path, progress=False)
    assert a.root == b.root and len(list(tmp_path.iterdir())) == 1
    c = cached_features(caption_set.subset([0, 2]), ienc, tenc, tmp_path, progress=False)
    assert c.root != a.root and c.image_feats.shape == (2, 1280)


def test_tokens_vocabulary_from_train_only(caption_set, encoders, tmp_path):
    ienc, _ = encoders
    train = ["a red square", "a blue square", "red red dots"]
    vocab = Vocabulary.build(train, min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "<start>", "<end>", "red", "a", "square"]
    ids, lengths, unknown, words = vocab.encode(["A red circle!", "square"])
    assert ids.tolist() == [[2, 5, 4, 1, 3], [2, 6, 3, 0, 0]] and lengths.tolist() == [5, 3]
    assert (unknown, words) == (1, 4)
    tok = text_encoder("tokens", train_captions=train, min_count=1)
    cache = FeatureCache.load(extract_features(caption_set, ienc, tok, tmp_path / "t", 3, progress=False))
    assert cache.text_feats.dtype == np.int64 and cache.text_lengths.shape == (8,)
    assert cache.text_feats.shape[1] == cache.text_lengths.max()
    assert cache.words == sum(len(c.split()) for c in caption_set.captions) + 1  # "Grass-coloured" is 2 words
    assert 0 < cache.unknown_words < cache.words
    rebuilt = build_encoder(cache.text_spec)
    assert rebuilt.vocabulary.words == tok.vocabulary.words
    gru = GRUTextEncoder(len(tok.vocabulary), word_dim=8, hidden=16, out_dim=12)
    out = gru(torch.from_numpy(np.array(cache.text_feats)), torch.from_numpy(np.array(cache.text_lengths)))
    assert out.shape == (8, 12)
    mean = GRUTextEncoder(len(tok.vocabulary), word_dim=8, hidden=16, bidirectional=True, pooling="mean")
    assert mean(torch.tensor([[2, 5, 3, 0]]), torch.tensor([3])).shape == (1, 32)


def test_encoder_specs_and_errors(tmp_path, encoders):
    ienc, tenc = encoders
    again = build_encoder(json.loads(json.dumps(ienc.spec)))
    assert again.spec == ienc.spec
    with pytest.raises(ConfigError, match="local weights file"):
        image_encoder("resnet152")
    with pytest.raises(ConfigError, match="local weights file"):
        image_encoder("timm:resnet18")
    rnd = image_encoder("timm:resnet18", weights="random")
    assert rnd.dim == 512 and rnd.encode([Image.new("RGB", (50, 40))]).shape == (1, 512)
    with pytest.raises(ConfigError, match="unknown image encoder"):
        image_encoder("vgg")
    feats = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    np.save(tmp_path / "t.npy", feats)
    pre = text_encoder("precomputed", features=tmp_path / "t.npy")
    np.testing.assert_array_equal(pre.encode(["x", "y"], np.array([3, 4])), feats[3:5])
    with pytest.raises(DataError, match="has 8 rows, row 9"):
        pre.encode(["x"], np.array([9]))
