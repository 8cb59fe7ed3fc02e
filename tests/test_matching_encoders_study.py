"""The chapter-6 feature-encoder study's encoders: Lite0's middle stage (`lite0_mid`), raw pixels for a CNN
trained from scratch (`pixels` + `SmallCNN`), a TF-IDF bag of words (`bow`), and the stems a model builds for
them (`build_stem`). Offline, a few seconds."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.encoders import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    BagOfWordsEncoder,
    build_encoder,
    image_encoder,
    text_encoder,
    tokenize,
)
from imagexplore.matching.stems import SmallCNN, TokenStem, build_stem

CAPTIONS = [
    "A red square on a white floor.",
    "Two red circles and a square",
    "a dog's ball, red and blue",
    "blue sky, white clouds",
    "The square is blue.",
]


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]


def test_names_listed():
    assert {"lite0_mid", "pixels"} <= set(IMAGE_ENCODERS) and "bow" in TEXT_ENCODERS


# --------------------------------------------------------------------------------------------- lite0_mid
def test_lite0_mid_stage_features_and_rebuild():
    import timm

    from imagexplore.retrieval.features import _LITE0_ARCH, _bundled_lite0_path, _load_weights

    try:
        weights = _bundled_lite0_path()
    except DataError:
        pytest.skip("the bundled Lite0 weights are not installed")
    if not weights.is_file():
        pytest.skip("the bundled Lite0 weights are missing")
    ref = timm.create_model(_LITE0_ARCH, pretrained=False)
    info = ref.feature_info
    stride16 = next(i for i, f in enumerate(info) if f["reduction"] == 16)

    enc = image_encoder("lite0_mid", workers=1)
    assert enc.spec["stage"] == stride16 and enc.dim == info[stride16]["num_chs"] == 112
    assert enc.spec["module"] == info[stride16]["module"] and enc.spec["weights_sha256"]
    images = _images()
    feats = enc.encode(images)
    assert feats.shape == (2, enc.dim) and feats.dtype == np.float32 and np.isfinite(feats).all()

    # the same as the full network's stage output (a forward hook), average-pooled
    _load_weights(ref, weights, _LITE0_ARCH)
    ref.eval()
    caught = {}
    ref.get_submodule(enc.spec["module"]).register_forward_hook(lambda m, i, o: caught.update(out=o))
    x = torch.from_numpy(np.stack([enc.preprocess(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref((x - enc.mean) / enc.std)
    np.testing.assert_allclose(feats, caught["out"].mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)

    again = build_encoder(json.loads(json.dumps(enc.spec)))
    assert again is not enc and again.spec == enc.spec
    np.testing.assert_array_equal(again.encode(images), feats)

    other = image_encoder("lite0_mid", stage=2, workers=1)
    assert other.dim == info[2]["num_chs"] == other.spec["dim"]
    with pytest.raises(ConfigError, match="stage"):
        image_encoder("lite0_mid", stage=9)


# --------------------------------------------------------------------------------------------- pixels
def test_pixels_by_hand():
    enc = image_encoder("pixels")
    assert enc.dim == 3 * 32 * 32 and enc.spec["size"] == 32
    assert enc.encode(_images()).shape == (2, 3072)

    enc = image_encoder("pixels", size=2, workers=1)
    assert enc.dim == 12
    a = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 128, 200]]], np.uint8)
    got = enc.encode([Image.fromarray(a)])
    want = [(a[y, x, c] / 255 - 0.5) / 0.5 for c in range(3) for y in range(2) for x in range(2)]
    np.testing.assert_allclose(got[0], want, atol=1e-6)
    # a wider image: the shorter side is already 2, so only the centre crop (columns 1, 2) is taken
    wide = np.concatenate([np.zeros((2, 1, 3), np.uint8), a, np.full((2, 1, 3), 255, np.uint8)], axis=1)
    np.testing.assert_allclose(enc.encode([Image.fromarray(wide)]), got, atol=1e-6)

    again = build_encoder(json.loads(json.dumps(enc.spec)))
    assert again.spec == enc.spec
    np.testing.assert_array_equal(again.encode([Image.fromarray(a)]), got)
    with pytest.raises(ConfigError, match="no weights"):
        image_encoder("pixels", weights="w.pth")
    with pytest.raises(ConfigError, match="unknown option"):
        image_encoder("pixels", stage=1)


def test_small_cnn_shape_and_gradients():
    torch.manual_seed(0)
    cnn = SmallCNN(size=16)
    assert cnn.out_dim == 128
    x = torch.randn(4, 3 * 16 * 16)
    out = cnn(x)
    assert out.shape == (4, 128)
    out.pow(2).sum().backward()
    first = cnn.features[0].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert SmallCNN(size=8, channels=(4, 8)).out_dim == 8
    with pytest.raises(ConfigError, match="size"):
        SmallCNN(size=4)
    with pytest.raises(ConfigError, match="flattened"):
        cnn(torch.randn(2, 3, 16, 16))


# --------------------------------------------------------------------------------------------- bow
def _naive_tfidf(train, texts):
    vocab = sorted({w for c in train for w in tokenize(c)})
    n = len(train)
    df = {w: sum(w in tokenize(c) for c in train) for w in vocab}
    idf = {w: math.log((1 + n) / (1 + df[w])) + 1 for w in vocab}
    rows = []
    for t in texts:
        tf = Counter(w for w in tokenize(t) if w in idf)
        vec = {w: tf[w] * idf[w] for w in tf}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        rows.append({w: v / norm for w, v in vec.items()} if norm else {})
    return rows


def test_bow_matches_naive_tfidf():
    enc = text_encoder("bow", train_captions=CAPTIONS)
    assert isinstance(enc, BagOfWordsEncoder) and enc.kind == "float"
    assert sorted(enc.vocabulary) == sorted({w for c in CAPTIONS for w in tokenize(c)})
    assert enc.dim == len(enc.vocabulary) and enc.vocabulary[0] == "a"  # the most frequent word first
    texts = [*CAPTIONS, "a zebra on the red square", "zebra quux"]
    got = enc.encode(texts)
    assert got.shape == (len(texts), enc.dim) and got.dtype == np.float32
    for row, want in zip(got, _naive_tfidf(CAPTIONS, texts), strict=True):
        expected = np.zeros(enc.dim)
        for w, v in want.items():
            expected[enc.vocabulary.index(w)] = v
        np.testing.assert_allclose(row, expected, atol=1e-6)
    norms = np.linalg.norm(got, axis=1)
    np.testing.assert_allclose(norms[:-1], 1.0, atol=1e-6)
    assert norms[-1] == 0  # no known word
    words = sum(len(tokenize(t)) for t in texts)
    assert (enc.unknown, enc.words) == (3, words)  # zebra twice, quux


def test_bow_spec_round_trip_and_max_size():
    enc = text_encoder("bow", train_captions=CAPTIONS, max_size=3)
    counts = Counter(w for c in CAPTIONS for w in tokenize(c))
    assert enc.vocabulary == sorted(counts, key=lambda w: (-counts[w], w))[:3] == ["a", "blue", "red"]
    assert len(enc.spec["idf"]) == enc.dim == 3
    spec = json.loads(json.dumps(enc.spec))
    again = build_encoder(spec)
    assert isinstance(again, BagOfWordsEncoder) and again.spec == enc.spec
    np.testing.assert_array_equal(again.encode(CAPTIONS), enc.encode(CAPTIONS))
    same = text_encoder("bow", vocabulary=spec["vocabulary"], idf=spec["idf"])
    np.testing.assert_array_equal(same.encode(CAPTIONS), enc.encode(CAPTIONS))

    assert text_encoder("bow", train_captions=CAPTIONS, min_count=3).vocabulary == [
        "a",
        "blue",
        "red",
        "square",
    ]
    with pytest.raises(ConfigError, match="train_captions"):
        text_encoder("bow")
    with pytest.raises(ConfigError, match="unknown option"):
        text_encoder("bow", train_captions=CAPTIONS, max_len=5)


# --------------------------------------------------------------------------------------------- stems
def test_build_stem():
    pix = image_encoder("pixels", size=16)
    stem = build_stem("image", pix.spec)
    assert isinstance(stem, SmallCNN) and stem.size == 16 and stem.out_dim == 128
    assert build_stem("image", pix.spec, channels=(8, 16, 24)).out_dim == 24
    stem.eval()
    assert stem(torch.from_numpy(pix.encode(_images()))).shape == (2, 128)

    tok = text_encoder("tokens", train_captions=CAPTIONS)
    stem = build_stem("text", tok.spec, word_dim=8, gru_hidden=16)
    assert isinstance(stem, TokenStem) and stem.out_dim == 16
    assert stem.encoder.embed.num_embeddings == len(tok.vocabulary)
    ids, lengths = tok.encode(CAPTIONS[:3])
    assert stem((torch.from_numpy(ids), torch.from_numpy(lengths))).shape == (3, 16)
    default = build_stem("text", tok.spec)
    assert default.out_dim == 1024 and default.encoder.embed.embedding_dim == 300

    assert build_stem("text", {"modality": "text", "name": "minilm", "dim": 384}) is None
    assert build_stem("text", text_encoder("bow", train_captions=CAPTIONS).spec) is None
    assert build_stem("image", {"modality": "image", "name": "lite0", "dim": 1280}) is None
    with pytest.raises(ConfigError, match="unknown option"):
        build_stem("image", pix.spec, word_dim=3)
    with pytest.raises(ConfigError, match="text side"):
        build_stem("text", pix.spec)
