import torch
import torchmetrics

from imagexplore.engine import ClassificationEvaluator


def test_hand_computed_case():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 0, 1])
    ev = ClassificationEvaluator(3, topk=(1, 2))
    ev.update(logits[:2], y[:2])
    ev.update(logits[2:], y[2:])
    out = ev.compute()
    # top-1: 0 ✓, 1 ✗(pred 1), 2 ✗(pred 2), 3 ✗(pred 0) → 1/4; top-2 sets {0,1},{1,2},{2,1},{0,2} → ✓ ✓ ✗ ✗
    assert out["acc1"] == 0.25 and out["acc2"] == 0.5 and out["count"] == 4
    assert ev.last_confusion.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    expected = torch.nn.functional.cross_entropy(logits, y).item()
    assert abs(out["loss"] - expected) < 1e-6


def test_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=g)
    y = torch.randint(0, 10, (500,), generator=g)
    ev = ClassificationEvaluator(10)
    for i in range(0, 500, 64):
        ev.update(logits[i : i + 64], y[i : i + 64])
    out = ev.compute()
    for k in (1, 5):
        ref = torchmetrics.functional.accuracy(logits, y, task="multiclass", num_classes=10, top_k=k)
        assert abs(out[f"acc{k}"] - ref.item()) < 1e-6
    cm = torchmetrics.functional.confusion_matrix(logits, y, task="multiclass", num_classes=10)
    assert torch.equal(ev.last_confusion, cm)
