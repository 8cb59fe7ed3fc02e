"""The BSDS boundary benchmark against the original Matlab output and pyEdgeEval, plus hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.morphology import thin as sk_thin

from imagexplore.edges.benchmark import collect, evaluate_image, score_arrays, score_folder, thin_binary
from imagexplore.edges.groundtruth import load_ground_truth, load_prediction
from imagexplore.edges.nms import conv_tri, edge_nms, edge_orientation, nms
from imagexplore.errors import DataError

GOLDEN = Path(__file__).parent / "data" / "edges_golden"
BSDS = GOLDEN / "bsds"


# ------------------------------------------------------------------ the original Matlab benchmark's test case
@pytest.fixture(scope="module")
def bsds_result():
    return score_folder(BSDS / "png", BSDS / "groundTruth", thresholds=5, workers=1, progress=False)


def test_matches_matlab_summary(bsds_result):
    ods_t, ods_r, ods_p, ods_f, ois_r, ois_p, ois_f, ap = np.loadtxt(BSDS / "test_2" / "eval_bdry.txt")
    r = bsds_result
    assert r["ods_threshold"] == pytest.approx(ods_t, abs=1e-6)
    # Matlab's CSA leaves a few matchable pixels unmatched (ε-optimal, randomised); we find the maximum.
    np.testing.assert_allclose([r["ods"], r["ois"], r["ap"]], [ods_f, ois_f, ap], atol=6e-4)
    got = [r["ods_recall"], r["ods_precision"], r["ois_recall"], r["ois_precision"]]
    np.testing.assert_allclose(got, [ods_r, ods_p, ois_r, ois_p], atol=1.2e-3)
    assert r["images"] == 5 and r["unmatched_predictions"] == 0 and r["unmatched_ground_truth"] == 0


def test_matches_matlab_per_threshold_and_image(bsds_result):
    thr = np.loadtxt(BSDS / "test_2" / "eval_bdry_thr.txt")
    np.testing.assert_allclose(bsds_result["thresholds"], thr[:, 0], atol=1e-6)
    np.testing.assert_allclose(bsds_result["recall"], thr[:, 1], atol=1.2e-3)
    np.testing.assert_allclose(bsds_result["precision"], thr[:, 2], atol=1.2e-3)
    np.testing.assert_allclose(bsds_result["f"], thr[:, 3], atol=6e-4)
    img = np.loadtxt(BSDS / "test_2" / "eval_bdry_img.txt")
    got = np.array([[e["threshold"], e["recall"], e["precision"], e["f"]] for e in bsds_result["per_image"]])
    np.testing.assert_allclose(got[:, 0], img[:, 1], atol=1e-6)
    # one image's cntP moves by a few pixels with the matching chosen (CSA vs ours): P up to 0.42 % apart
    assert (np.abs(got[:, 1:] - img[:, 2:]) <= [5e-4, 4.5e-3, 2.5e-3]).all()
    assert [e["name"] for e in bsds_result["per_image"]] == ["2018", "3063", "5096", "6046", "8068"]


# ------------------------------------------------------------------ pyEdgeEval on synthetic shapes-world cases
@pytest.mark.parametrize("case", sorted(json.loads((GOLDEN / "pyedgeeval_golden.json").read_text())))
def test_matches_pyedgeeval(case):
    ref = json.loads((GOLDEN / "pyedgeeval_golden.json").read_text())[case]
    z = np.load(GOLDEN / f"pyedgeeval_{case}.npz")
    res = score_arrays([p / 255 for p in z["preds"]], list(z["gts"]), thresholds=ref["thresholds"])
    assert res["ods"] == pytest.approx(ref["ODS"], abs=2e-3)
    assert res["ois"] == pytest.approx(ref["OIS"], abs=2e-3)
    assert res["ap"] == pytest.approx(ref["AUC"], abs=2e-3)


# ------------------------------------------------------------------ matching by hand
def _one(pred_yx, gt_yx, shape=(100, 100), max_dist=0.0075, **kw):
    pred, gt = np.zeros(shape), np.zeros((1, *shape), bool)
    for y, x in pred_yx:
        pred[y, x] = 1.0
    for y, x in gt_yx:
        gt[0, y, x] = True
    return evaluate_image(pred, gt, thresholds=[0.5], max_dist=max_dist, **kw)[0].tolist()


def test_match_distance_is_inclusive_euclidean():
    # 100×100: reach = 0.0075·√20000 = 1.0607 px → (0,1) matches, the diagonal (1,1) (√2) does not.
    assert _one([(50, 50)], [(50, 51)]) == [1, 1, 1, 1]
    assert _one([(50, 50)], [(51, 51)]) == [0, 1, 0, 1]
    # 3×4 image: diagonal 5, max_dist 0.2 → reach exactly 1.0 px: distance 1 is within (<=).
    assert _one([(1, 1)], [(1, 2)], shape=(3, 4), max_dist=0.2) == [1, 1, 1, 1]
    assert _one([(1, 1)], [(1, 3)], shape=(3, 4), max_dist=0.2) == [0, 1, 0, 1]


def test_matching_is_one_to_one_and_maximum():
    # two predictions compete for one gt pixel: one match
    assert _one([(50, 50), (50, 52)], [(50, 51)], thin=False) == [1, 1, 1, 2]
    # a greedy nearest-first choice would strand a gt pixel; the maximum matching gets both
    assert _one([(50, 50), (50, 51)], [(50, 51), (50, 52)], thin=False) == [2, 2, 2, 2]


def test_union_over_annotators_and_thresholds():
    pred = np.zeros((100, 100))
    pred[50, 50], pred[20, 20] = 0.9, 0.3
    gts = np.zeros((2, 100, 100), bool)
    gts[0, 50, 50] = gts[1, 20, 20] = gts[1, 70, 70] = True
    c = evaluate_image(pred, gts, thresholds=[0.2, 0.5, 0.95], thin=False)
    assert c.tolist() == [[2, 3, 2, 2], [1, 3, 1, 1], [0, 3, 0, 0]]


def test_thresholds_are_inclusive():
    pred = np.zeros((20, 20), np.float32)
    pred[5, 5], pred[5, 6] = 51 / 255, 50 / 255  # 51/255 == 0.2 exactly once read back on the 8-bit grid
    gts = np.zeros((1, 20, 20), bool)
    assert evaluate_image(pred, gts, thresholds=[0.2, 0.21])[:, 3].tolist() == [1, 0]


def test_thinning_equals_bwmorph_thin():
    rng = np.random.default_rng(0)
    for k in range(20):
        b = gaussian_filter(rng.random((40, 60)), 1 + k % 3) > 0.5
        np.testing.assert_array_equal(thin_binary(b), sk_thin(b))
    b = rng.random((30, 30)) < 0.5
    np.testing.assert_array_equal(thin_binary(b), sk_thin(b))


# ------------------------------------------------------------------ collect
def test_collect_by_hand():
    # image 1: thresholds t = 1/4, 1/2, 3/4; F = [0.5, 2/3, 0.4] → OIS counts at t = 1/2
    a = np.array([[5, 10, 5, 10], [4, 10, 8, 10], [2, 10, 5, 5]])
    b = np.array([[0, 0, 0, 4], [0, 0, 0, 0], [0, 0, 0, 0]])  # no gt at all: R = 0, P = 0 or 0/0 → 0
    res = collect(3, [a, b])
    tot = a + b
    r, p = tot[:, 0] / tot[:, 1], tot[:, 2] / tot[:, 3]
    np.testing.assert_allclose(res["recall"], r)
    np.testing.assert_allclose(res["precision"], p)
    assert res["ois_recall"] == pytest.approx(4 / 10) and res["ois_precision"] == pytest.approx(8 / 10)
    assert res["ois"] == pytest.approx(2 * 0.4 * 0.8 / 1.2)
    # ODS: best F on straight segments between thresholds (d = k/99)
    d = np.arange(100) / 99
    seg_r = np.concatenate([r[i] * d + r[i - 1] * (1 - d) for i in (1, 2)])
    seg_p = np.concatenate([p[i] * d + p[i - 1] * (1 - d) for i in (1, 2)])
    assert res["ods"] == pytest.approx((2 * seg_p * seg_r / (seg_p + seg_r)).max())
    # area under PR: recall points 0.2, 0.4, 0.5 → interpolated precision summed on 0:0.01:1
    ri = np.arange(101) * 0.01
    assert res["ap"] == pytest.approx(np.interp(ri, r[::-1], p[::-1], left=0, right=0).sum() * 0.01)
    assert res["per_image"][1]["f"] == 0 and res["images"] == 2
    with pytest.raises(DataError, match="counts"):
        collect(5, [a])


# ------------------------------------------------------------------ file reading and bad input
def _write_mat(path, cell):
    sio.savemat(path, {"groundTruth": cell})


def test_ground_truth_reading(tmp_path):
    g = load_ground_truth(BSDS / "groundTruth" / "2018.mat")
    assert g.dtype == bool and g.shape == (5, 481, 321)
    Image.fromarray((np.eye(8) * 200).astype(np.uint8)).save(tmp_path / "a.png")
    assert load_ground_truth(tmp_path / "a.png").sum() == 8
    cell = np.empty((1, 2), object)
    cell[0, 0] = {"Boundaries": np.zeros((4, 5), np.uint8)}
    cell[0, 1] = {"Boundaries": np.zeros((4, 6), np.uint8)}
    _write_mat(tmp_path / "sizes.mat", cell)
    with pytest.raises(DataError, match="different sizes"):
        load_ground_truth(tmp_path / "sizes.mat")
    cell[0, 1] = {"Segmentation": np.zeros((4, 5), np.uint8)}
    _write_mat(tmp_path / "field.mat", cell)
    with pytest.raises(DataError, match="no 'Boundaries'"):
        load_ground_truth(tmp_path / "field.mat")
    _write_mat(tmp_path / "empty.mat", np.empty((1, 0), object))
    with pytest.raises(DataError, match="zero annotators"):
        load_ground_truth(tmp_path / "empty.mat")
    sio.savemat(tmp_path / "other.mat", {"x": 1})
    with pytest.raises(DataError, match="groundTruth"):
        load_ground_truth(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="junk.mat"):
        load_ground_truth(tmp_path / "junk.mat")


def test_prediction_formats(tmp_path):
    v = np.array([[0, 51, 255]], np.uint8)
    Image.fromarray(v).save(tmp_path / "g8.png")
    np.testing.assert_array_equal(load_prediction(tmp_path / "g8.png"), (v / 255).astype(np.float32))
    Image.fromarray(np.array([[0, 65535, 13107]], np.uint16)).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load_prediction(tmp_path / "g16.png"), [[0, 1, 0.2]], atol=1e-7)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1] = (255, 255, 255, 0)  # white but fully transparent: alpha is ignored
    Image.fromarray(rgba).save(tmp_path / "c.png")
    np.testing.assert_allclose(load_prediction(tmp_path / "c.png"), [[0, 1]], atol=1e-6)


def test_score_folder_errors(tmp_path):
    (tmp_path / "p").mkdir(), (tmp_path / "g").mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "p" / "a.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "p" / "b.png")
    with pytest.raises(DataError, match="same file stem"):
        score_folder(tmp_path / "p", tmp_path / "g", progress=False)
    Image.fromarray(np.zeros((10, 13), np.uint8)).save(tmp_path / "g" / "a.png")
    with pytest.raises(DataError, match=r"a\.png.*10×12.*10×13"):
        score_folder(tmp_path / "p", tmp_path / "g", workers=1, progress=False)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "g" / "a.png")
    res = score_folder(tmp_path / "p", tmp_path / "g", thresholds=3, workers=1, progress=False)
    assert res["unmatched_predictions"] == 1 and res["unmatched_ground_truth"] == 0 and res["ods"] == 0


# ------------------------------------------------------------------ NMS against a naive per-pixel reference
def _naive_nms(e, o, r=1, s=5, m=1.01):
    e = e.astype(np.float32)
    h, w = e.shape
    out = e.copy()
    f32 = np.float32

    def interp(x, y):
        x = f32(0) if x < 0 else (f32(w - 1.001) if x > f32(w - 1.001) else x)
        y = f32(0) if y < 0 else (f32(h - 1.001) if y > f32(h - 1.001) else y)
        x0, y0 = int(x), int(y)
        dx0, dy0 = f32(x - f32(x0)), f32(y - f32(y0))
        dx1, dy1 = f32(1) - dx0, f32(1) - dy0
        return (e[y0, x0] * dx1 * dy1 + e[y0, x0 + 1] * dx0 * dy1 + e[y0 + 1, x0] * dx1 * dy0) + e[
            y0 + 1, x0 + 1
        ] * dx0 * dy0

    for y in range(h):
        for x in range(w):
            v = e[y, x]
            if not v:
                continue
            v = v * f32(m)
            co, si = np.cos(f32(o[y, x])), np.sin(f32(o[y, x]))
            for d in range(-r, r + 1):
                if d and v < interp(f32(x) + f32(d) * co, f32(y) + f32(d) * si):
                    out[y, x] = 0
                    break
    s = min(s, w // 2, h // 2)
    for x in range(s):
        out[:, x] *= f32(x) / f32(s)
        out[:, w - 1 - x] *= f32(x) / f32(s)
    for y in range(s):
        out[y, :] *= f32(y) / f32(s)
        out[h - 1 - y, :] *= f32(y) / f32(s)
    return out


def test_nms_equals_naive_reference():
    rng = np.random.default_rng(1)
    for shape in [(17, 23), (30, 12)]:
        e = gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
        e[e < np.quantile(e, 0.3)] = 0
        o = edge_orientation(e)
        np.testing.assert_allclose(edge_nms(e, o), _naive_nms(e, o), atol=1e-6)
        o = rng.uniform(0, np.pi, shape).astype(np.float32)
        np.testing.assert_allclose(edge_nms(e, o, r=2, s=3), _naive_nms(e, o, r=2, s=3), atol=1e-6)


def test_conv_tri_kernels():
    img = np.zeros((9, 9), np.float32)
    img[4, 4] = 1
    k = np.array([1, 2, 1]) / 4
    np.testing.assert_allclose(conv_tri(img, 1)[3:6, 3:6], np.outer(k, k), atol=1e-7)
    p = 12 / 0.5 / 2.5 - 2
    k = np.array([1, p, 1]) / (2 + p)
    np.testing.assert_allclose(conv_tri(img, 0.5)[3:6, 3:6], np.outer(k, k), atol=1e-7)
    edge = np.zeros((5, 5), np.float32)
    edge[:, 0] = 1  # symmetric border: the column reflects onto itself
    assert conv_tri(edge, 1)[2, 0] == pytest.approx(0.75)


def test_nms_makes_blurred_line_one_pixel_wide():
    e = np.zeros((40, 40), np.float32)
    e[:, 20] = 1
    e = gaussian_filter(e, 2)
    out = nms(e)
    rows = out[8:-8]
    assert ((rows > 0).sum(axis=1) == 1).all() and (rows[:, 20] > 0).all()
