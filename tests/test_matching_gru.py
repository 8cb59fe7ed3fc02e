"""The learned text side of chapter 5: word ids of the captions (vocabulary from the training captions only) →
word embeddings + GRU → the RRF text branch, trained end to end; checkpoints, evaluation and the Matcher read the
same vocabulary. A tiny shapes set and a small GRU keep it to ~15 s here."""

import json

import pytest

from imagexplore.cli import main


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGEXPLORE_CACHE", str(tmp_path_factory.mktemp("cache")))
        run = tmp_path_factory.mktemp("runs") / "gru"
        sets = [
            "data.options.num_images={train: 80, val: 20, test: 20}",
            "data.options.size=48",
            "data.batch_size=64",
            "model.kwargs={steps: 1, hidden: 256, dim: 128, word_dim: 32, gru_hidden: 64}",
            "train.iterations=120",
            "train.eval_every_iters=120",
            "schedule.milestones=[90]",
            "train.tensorboard=false",
        ]
        args = ["match", "train", "--config", "shapes_gru_quick", "--out", str(run), "--no-progress"]
        assert main(args + [a for s in sets for a in ("--set", s)]) == 0
        yield run


def test_gru_trains_and_evaluates(gru_run, capsys):
    from imagexplore.engine.checkpoint import load_checkpoint

    meta = load_checkpoint(gru_run / "checkpoints" / "best.pt")["meta"]
    spec = meta["text_encoder"]
    assert spec["name"] == "tokens" and meta["text_dim"] == len(spec["vocabulary"])
    assert spec["vocabulary"][:4] == ["<pad>", "<unk>", "<start>", "<end>"]
    capsys.readouterr()
    assert main(["match", "eval", "--checkpoint", str(gru_run), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 20 test scenes: chance R@sum ≈ 2 × (5 + 25 + 50) = 160 for text→image and about that both ways
    assert out["images"] == 20 and out["rsum"] > 200, out


def test_gru_matcher_maps_new_words_to_unk(gru_run):
    import numpy as np

    from imagexplore.matching.matcher import Matcher

    m = Matcher.load(gru_run)
    emb = m.encode_text(["a red circle", "zyzzyva quuxbar"])  # the second: words no caption had
    assert emb.shape == (2, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert m.text_encoder.unknown >= 2
