"""`retrieve eval`: benchmark folders in their official layouts, generated query sets, scoring and the baseline.

Fixtures are tiny copies of each layout (file names, gt_files, a revisited gnd pickle) filled with shapes-world
views, so a real CNN runs on them with small patches (64 px) and the expected answers are known: an image's own
copies are its positives.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval import benchmarks, evaluate, querysets
from imagexplore.retrieval.features import extract, load_backbone
from imagexplore.retrieval.index import IndexConfig

WORLD = ShapesWorld(seed=3, size=80)


def _view(group: int, view: int) -> Image.Image:
    return Image.fromarray(WORLD.view(group, view)["image"])


@pytest.fixture(scope="module")
def extractor():
    return load_backbone(input_size=64)


def _holidays(root, groups=4, views=3):
    (root / "jpg").mkdir(parents=True)
    for g in range(groups):
        for v in range(views):
            _view(g, v).save(root / "jpg" / f"{1000 + g}{v:02d}.jpg", quality=95)
    return root


def test_holidays_layout_and_perfect_duplicates(tmp_path, extractor):
    root = _holidays(tmp_path / "holidays")
    bench = benchmarks.load_holidays(root)
    assert [q.name for q in bench.queries] == ["100000.jpg", "100100.jpg", "100200.jpg", "100300.jpg"]
    assert bench.query_ids.tolist() == [0, 3, 6, 9]
    assert [p.tolist() for p in bench.positives] == [[1, 2], [4, 5], [7, 8], [10, 11]]
    assert [j.tolist() for j in bench.junk] == [[0], [3], [6], [9]]
    assert bench.notes["rotate_upright"] is False
    assert evaluate.load_benchmark("holidays", root, upright=True).notes["rotate_upright"] is True
    with pytest.raises(DataError, match="Holidays"):
        evaluate.load_benchmark("ukbench", root, upright=True)
    # the positives of each query are byte copies of it: every method must find them first
    for q, pos in zip(bench.query_ids, bench.positives):
        for p in pos:
            bench.images[p].write_bytes(bench.images[q].read_bytes())
    feats = evaluate.extract_benchmark(bench, extractor, progress=False)
    for cfg in (IndexConfig(types=("high",), k=8), IndexConfig(types=("mid", "high"), mode="2d", k=8)):
        assert evaluate.evaluate_index(bench, feats, cfg)["metrics"]["map"] == 1.0
    assert evaluate.evaluate_pixels(bench)["metrics"]["map"] == 1.0


def test_holidays_real_views_and_query_exclusion(tmp_path, extractor):
    bench = benchmarks.load_holidays(_holidays(tmp_path / "holidays", groups=5))
    feats = evaluate.extract_benchmark(bench, extractor, progress=False)
    res = evaluate.evaluate_index(bench, feats, IndexConfig(types=("high",), k=8, scoring="signature"))
    assert 0.0 < res["metrics"]["map"] <= 1.0
    assert res["bytes_per_image"] == 14 * 4 + 512 * 4  # the 1,280-d head is PCA'd to the 512-d signature
    # independent ranking: PCA signature of the whole-image feature as the thesis' step 4 (ch. 4) defines it
    from imagexplore.retrieval.index import InvertedIndex
    from imagexplore.retrieval.metrics import mean_average_precision

    index = InvertedIndex.build({"high": feats.db["high"]}, IndexConfig(types=("high",), k=8))
    mean, comps = index.pca["high"]

    def sig(x):
        y = (x - mean) @ comps.T
        return y / np.linalg.norm(y, axis=-1, keepdims=True)

    sims = sig(feats.queries["high"][:, 0]) @ sig(feats.db["high"][:, 0]).T
    index_rankings = list(np.argsort(-sims, axis=1, kind="stable"))
    own = mean_average_precision(index_rankings, bench.positives, bench.junk)
    assert own == pytest.approx(res["metrics"]["map"], abs=1e-6)
    # the query ranks itself first; were it not junk it would be a negative at rank 1 and lower every AP
    assert all(r[0] == q for r, q in zip(index_rankings, bench.query_ids))
    assert mean_average_precision(index_rankings, bench.positives) < own


def test_ukbench_ns_with_padding(tmp_path):
    root = tmp_path / "ukbench" / "full"
    root.mkdir(parents=True)
    for i in range(8):
        _view(i // 4, i % 4).save(root / f"ukbench{i:05d}.jpg")
    bench = benchmarks.load_ukbench(tmp_path / "ukbench")
    assert bench.groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and bench.protocol == "ns"
    perfect = [np.array([g * 4 + (i + j) % 4 for j in range(4)]) for i, g in enumerate(bench.groups)]
    assert evaluate.score_rankings(bench, perfect) == {"ns": 4.0}
    # a query with 2 candidates is padded from database order: [5, 4] + [0, 1] → 2 of its group
    short = [perfect[i] if i != 5 else np.array([5, 4]) for i in range(8)]
    assert evaluate.score_rankings(bench, short)["ns"] == pytest.approx((7 * 4 + 2) / 8)


def _oxford(root, extractor=None):
    (root / "jpg").mkdir(parents=True)
    (root / "gt").mkdir()
    names = [f"college_{i:06d}" for i in range(6)]
    for i, n in enumerate(names):
        _view(i // 3, i % 3).resize((120, 100)).save(root / "jpg" / f"{n}.jpg")
    for q, (query, good, ok, junk) in enumerate(
        [(names[0], names[1:2], names[2:3], names[3:4]), (names[3], names[4:6], [], [])]
    ):
        (root / "gt" / f"college_{q + 1}_query.txt").write_text(f"oxc1_{query} 10.5 20 90 80.25\n")
        for kind, items in (("good", good), ("ok", ok), ("junk", junk)):
            (root / "gt" / f"college_{q + 1}_{kind}.txt").write_text("".join(f"{n}\n" for n in items))
    return root


def test_oxford_layout_crops_queries_to_boxes(tmp_path, extractor):
    bench = benchmarks.load_oxford_paris(_oxford(tmp_path / "oxford5k"), "oxford5k")
    assert [q.stem for q in bench.queries] == ["college_000000", "college_000003"]
    assert bench.query_boxes == [(10.5, 20.0, 90.0, 80.25)] * 2
    assert [p.tolist() for p in bench.positives] == [[1, 2], [4, 5]]
    assert [j.tolist() for j in bench.junk] == [[3], []]
    feats = evaluate.extract_benchmark(bench, extractor, progress=False)
    whole = extract(extractor, bench.queries[:1], progress=False)["high"][0, 0]
    cropped_file = tmp_path / "crop.png"
    Image.open(bench.queries[0]).crop((10, 20, 90, 80)).save(cropped_file)
    cropped = extract(extractor, [cropped_file], progress=False)["high"][0, 0]
    got = feats.queries["high"][0, 0]
    assert float(got @ cropped) > float(got @ whole)  # the query describes its box, not the whole image
    assert float(got @ cropped) > 0.95


def test_revisited_layout_and_protocol(tmp_path):
    root = tmp_path / "roxford5k"
    (root / "jpg").mkdir(parents=True)
    imlist = [f"im{i}" for i in range(5)]
    for i, n in enumerate(imlist + ["q0"]):
        _view(i, 0).save(root / "jpg" / f"{n}.jpg")
    gnd = [{"bbx": [1.0, 2.0, 50.0, 60.0], "easy": [0], "hard": [2], "junk": [4]}]
    with open(root / "gnd_roxford5k.pkl", "wb") as fh:
        pickle.dump({"imlist": imlist, "qimlist": ["q0"], "gnd": gnd}, fh)
    bench = benchmarks.load_revisited(root, "roxford5k")
    assert [p.stem for p in bench.images] == imlist and bench.queries[0].stem == "q0"
    assert bench.query_boxes == [(1.0, 2.0, 50.0, 60.0)]
    scores = evaluate.score_rankings(bench, [np.array([0, 4, 1, 2, 3])])
    # easy: positive 0 first (hard 2 and junk 4 ignored) → 1; hard: 2 at position 1 after removing 0 and 4
    assert scores["easy"] == 1.0
    assert scores["hard"] == pytest.approx(0.5 * (0 / 1 + 1 / 2))
    (root / "jpg" / "im3.jpg").unlink()
    with pytest.raises(DataError, match="im3"):
        benchmarks.load_revisited(root, "roxford5k")


def test_photo_copies_set_is_written_once_and_scored(tmp_path):
    sources = []
    for i in range(6):
        path = tmp_path / "src" / f"scene{i}.png"
        path.parent.mkdir(exist_ok=True)
        _view(i, 0).resize((160, 140)).save(path)
        sources.append(path)
    bench = querysets.make_photo_copies(tmp_path / "set", originals=2, sources=sources, max_side=160)
    assert len(bench.images) == 6 and len(bench.queries) == 2 * len(querysets.EDITS)
    assert all(len(p) == 1 for p in bench.positives)
    kinds = sorted({q.stem.rsplit("__", 1)[1] for q in bench.queries})
    assert kinds == sorted(querysets.EDITS)
    stamp = (tmp_path / "set" / "manifest.json").stat().st_mtime_ns
    again = querysets.make_photo_copies(tmp_path / "set", originals=2, sources=sources, max_side=160)
    assert (tmp_path / "set" / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert again.queries == bench.queries
    # every copy's original is the one positive: pixels find at least the gentle edits
    res = evaluate.evaluate_pixels(bench)["metrics"]["map"]
    assert 0.3 < res <= 1.0
    # distractors join the database only, never as originals or positives
    more = querysets.make_photo_copies(
        tmp_path / "set2", originals=2, sources=sources[:3], max_side=160, distractors=sources[3:]
    )
    assert len(more.images) == 6 and sum("distractor_" in p.name for p in more.images) == 3
    assert all("distractor_" not in more.images[int(p[0])].name for p in more.positives)
    assert all("distractor_" not in q.name for q in more.queries)
    # distractors leave the queries as they were: the same originals, byte-identical edits
    plain = querysets.make_photo_copies(tmp_path / "set3", originals=2, sources=sources[:3], max_side=160)
    assert [q.name for q in plain.queries] == [q.name for q in more.queries]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(plain.queries, more.queries))
    with pytest.raises(ConfigError, match="unknown edit"):
        querysets.make_photo_copies(tmp_path / "x", edits=("blur",), sources=sources)


def test_run_eval_shapes_and_cli_json(tmp_path, capsys):
    from imagexplore import cli

    out = tmp_path / "res.json"
    argv = [
        "retrieve",
        "eval",
        "--dataset",
        "shapes",
        "--root",
        str(tmp_path / "shapes"),
        "--patch-size",
        "64",
    ]
    argv += ["--k", "8", "--baseline", "--out", str(out), "--json"]
    assert cli.main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(out.read_text())
    assert res["dataset"] == "shapes" and res["images"] == 160 and res["queries"] == 40
    assert 0 < res["pixel_baseline"]["metrics"]["map"] < 1 and 0 < res["metrics"]["map"] <= 1
    assert res["bytes_per_image"] == 2104 and res["patch_size"] == 64


def test_experiment_config_and_bad_input(tmp_path):
    (tmp_path / "exp.yaml").write_text("dataset: shapes\ntarget: {map: 0.5}\nindex: {mode: 2d, k: 64}\n")
    exp = evaluate.read_experiment(tmp_path / "exp.yaml")
    assert exp["dataset"] == "shapes" and exp["index"] == {"mode": "2d", "k": 64}
    (tmp_path / "plain.yaml").write_text("k: 16\n")
    assert evaluate.read_experiment(tmp_path / "plain.yaml") == {"index": {"k": 16}}
    (tmp_path / "typo.yaml").write_text("dataset: shapes\nindx: {}\nindex: {}\n")
    with pytest.raises(ConfigError, match="indx"):
        evaluate.read_experiment(tmp_path / "typo.yaml")
    (tmp_path / "noindex.yaml").write_text("dataset: shapes\nindex:\n")
    with pytest.raises(ConfigError, match="mapping"):
        evaluate.read_experiment(tmp_path / "noindex.yaml")
    with pytest.raises(ConfigError, match="bundled configs: .*holidays_multi_deepindex"):
        evaluate.read_experiment("no_such_config")
    # `retrieve build --config` takes the index section of an experiment config, by path or bundled name
    from imagexplore.retrieval.api import resolve_config

    assert resolve_config(tmp_path / "exp.yaml").k == 64
    assert resolve_config("ukbench_multi_deepindex").types == ("mid", "high")
    with pytest.raises(DataError, match="not a folder"):
        evaluate.load_benchmark("holidays", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        evaluate.load_benchmark("ukbench", tmp_path / "empty")


def test_bundled_configs_parse():
    from imagexplore.retrieval.api import resolve_config

    names = sorted(p.stem for p in evaluate.CONFIG_DIR.glob("*.yaml"))
    assert "holidays_multi_deepindex" in names and len(names) >= 5
    targets = {}
    for name in names:
        exp = evaluate.read_experiment(name)  # found by name
        assert exp["dataset"] in evaluate.DATASETS
        cfg = resolve_config(exp["index"])
        assert cfg.signature_dim == 512 and len(cfg.types) == (2 if cfg.mode == "2d" else 1)
        if "target" in exp:
            targets[exp["dataset"]] = exp["target"]
    assert targets["holidays"]["map"] == 0.8565 and targets["paris6k"]["map"] == 0.8124
    assert targets["ukbench"]["ns"] == 3.76


def test_combined_sets_shift_ground_truth(tmp_path):
    shapes = querysets.make_shapes(tmp_path / "s", groups=2, views=2, size=48)
    other = querysets.make_shapes(tmp_path / "t", groups=3, views=2, size=48, seed=1)
    both = querysets.combine("both", shapes, other)
    assert len(both.images) == 10 and both.query_ids is None
    assert [p.tolist() for p in both.positives] == [[1], [3], [5], [7], [9]]
    assert [j.tolist() for j in both.junk] == [[0], [2], [4], [6], [8]]
    assert all(both.images[j[0]] == q for j, q in zip(both.junk, both.queries))
