import json
import math

import pytest
import torch

from helpers import BlobDataset, quick_cfg
from imagexplore import models
from imagexplore.classification.task import ClassificationTask
from imagexplore.config import OptimConfig, ParamGroupConfig, ScheduleConfig
from imagexplore.engine import Trainer, load_checkpoint
from imagexplore.engine.optim import build_optimizer, lr_factor
from imagexplore.engine.sampler import EpochSampler
from imagexplore.errors import TrainingError


def make_trainer(cfg, run_dir, task=None, train=None, val=None):
    torch.manual_seed(cfg.train.seed)
    model = models.create("simple_cnn", num_classes=4, **cfg.model.kwargs)
    train = train or BlobDataset(256)
    val = val or BlobDataset(100, seed=1)
    return Trainer(
        cfg, model, task or ClassificationTask(train.classes), train, val, run_dir, show_progress=False
    )


def test_fit_writes_run_directory(tmp_path):
    t = make_trainer(quick_cfg(), tmp_path)
    summary = t.fit()
    for name in (
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["best"]["metric"] == "val/acc1"
    assert set(saved) >= {"best", "final", "seconds"}
    assert saved["final"]["val/count"] == 100  # every validation sample counted once
    env = json.loads((tmp_path / "env.json").read_text())
    assert {"command", "git_commit", "packages", "device"} <= set(env)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in lines) and any("val/acc1" in r for r in lines)
    assert summary["iterations"] == t.total_iters == 2 * (256 // 32)


def test_resume_is_bit_identical(tmp_path):
    """2 epochs straight == 1 epoch, stop, resume 1 epoch (dropout, BN, momentum, warm-up + cosine)."""
    cfg = quick_cfg()
    full = make_trainer(cfg, tmp_path / "full")
    full.fit()
    part = make_trainer(cfg, tmp_path / "part")
    part.fit(stop_at=part.iters_per_epoch)
    resumed = make_trainer(cfg, tmp_path / "part")
    resumed.fit(resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.state.iteration == full.state.iteration


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    cfg = quick_cfg("train.iterations=13")  # stops inside epoch 2
    full = make_trainer(cfg, tmp_path / "full")
    full.fit()
    part = make_trainer(cfg, tmp_path / "part")
    part.fit(stop_at=5)
    assert load_checkpoint(tmp_path / "part/checkpoints/last.pt")["train_state"]["batch_in_epoch"] == 5
    resumed = make_trainer(cfg, tmp_path / "part")
    resumed.fit(resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_gradient_accumulation_matches_large_batch(tmp_path):
    # No BN / dropout dependence on batch size: compare weights after SGD without momentum.
    common = [
        "optim.momentum=0",
        "schedule.name=constant",
        "schedule.warmup_iters=0",
        "model.kwargs={width: 8, depth: 2}",
        "train.epochs=1",
    ]
    big = make_trainer(quick_cfg(*common, "data.batch_size=32"), tmp_path / "a")
    small = make_trainer(quick_cfg(*common, "data.batch_size=16", "train.accumulate=2"), tmp_path / "b")
    for t in (big, small):  # BN in train mode normalises per micro-batch: freeze it to compare pure gradients
        for m in t.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
                m.train = lambda mode=True, m=m: m
    big.fit()
    small.fit()
    assert big.state.iteration == small.state.iteration
    for k, v in big.model.state_dict().items():
        torch.testing.assert_close(v, small.model.state_dict()[k], rtol=1e-4, atol=1e-5)


class NaNAfter(ClassificationTask):
    def __init__(self, classes, after):
        super().__init__(classes)
        self.after, self.calls = after, 0

    def training_step(self, model, batch, optimizer):
        loss, logs = super().training_step(model, batch, optimizer)
        self.calls += 1
        return (loss * float("nan") if self.calls > self.after else loss), logs


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = quick_cfg("train.epochs=3")
    t = make_trainer(cfg, tmp_path, task=NaNAfter(BlobDataset().classes, after=10))
    with pytest.raises(TrainingError, match="non-finite loss.*last good checkpoint kept"):
        t.fit()
    ck = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ck["train_state"]["iteration"] == 8  # the end of epoch 1, before the NaN at step 11
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_param_group_multipliers():
    model = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    cfg = OptimConfig(
        lr=0.1,
        weight_decay=1e-4,
        param_groups=[
            ParamGroupConfig(pattern=r"^fc\.weight", lr_mult=0.1),
            ParamGroupConfig(pattern=r"^fc\.bias", lr_mult=0.2, wd_mult=0.0),
        ],
    )
    opt = build_optimizer(model, cfg)
    by_name = {n: g for g in opt.param_groups for n in g["param_names"]}
    assert by_name["fc.weight"]["lr"] == pytest.approx(0.01)
    assert by_name["fc.bias"]["lr"] == pytest.approx(0.02) and by_name["fc.bias"]["weight_decay"] == 0
    assert by_name["features.0.0.weight"]["lr"] == pytest.approx(0.1)
    assert by_name["features.0.0.weight"]["weight_decay"] == pytest.approx(1e-4)


def test_schedules_by_hand():
    step = ScheduleConfig(name="step", step_size=10, gamma=0.1)
    assert [lr_factor(step, i, 100) for i in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])
    ms = ScheduleConfig(name="multistep", milestones=[40, 80], gamma=0.1)  # the CFN recipe in miniature
    assert [lr_factor(ms, i, 120) for i in (39, 40, 79, 80)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cos = ScheduleConfig(name="cosine", warmup_iters=10, warmup_factor=0.1)
    assert lr_factor(cos, 0, 110) == pytest.approx(0.1)
    assert lr_factor(cos, 5, 110) == pytest.approx(0.55)
    assert lr_factor(cos, 10, 110) == pytest.approx(1.0)
    assert lr_factor(cos, 60, 110) == pytest.approx(0.5)
    lin = ScheduleConfig(name="linear", decay_start=0.5)  # pix2pix: constant for half, then linear to 0
    assert [lr_factor(lin, i, 200) for i in (0, 99, 100, 150, 200)] == pytest.approx([1, 1, 1, 0.5, 0])
    assert lr_factor(cos, 110, 110) == pytest.approx(0.0, abs=1e-12)
    ep = ScheduleConfig(name="multistep", milestones=[2], unit="epochs")
    assert (
        lr_factor(ep, 19, 100, iters_per_epoch=10) == 1 and lr_factor(ep, 20, 100, iters_per_epoch=10) == 0.1
    )


def test_scheduler_drives_each_group_lr(tmp_path):
    cfg = quick_cfg(
        "schedule.name=step",
        "schedule.step_size=8",
        "schedule.warmup_iters=0",
        "optim.param_groups=[{pattern: '^fc', lr_mult: 0.1}]",
        "train.epochs=1",
    )
    t = make_trainer(cfg, tmp_path)
    t.fit()
    lrs = {g["lr_mult"]: g["lr"] for g in t.optimizers["main"].param_groups}
    assert lrs[1.0] == pytest.approx(0.005) and lrs[0.1] == pytest.approx(0.0005)


def test_training_in_iterations_and_eval_every_iters(tmp_path):
    t = make_trainer(
        quick_cfg("train.iterations=10", "train.eval_every_iters=4", "train.eval_every=0"), tmp_path
    )
    summary = t.fit()
    assert summary["iterations"] == 10
    evals = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in evals if "val/acc1" in r] == [4, 8, 10]


def test_sampler_shards_cover_once_without_padding():
    n = 101
    shards = [list(EpochSampler(n, shuffle=True, seed=3, rank=r, world_size=2, pad=False)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(n))
    padded = [list(EpochSampler(n, shuffle=True, seed=3, rank=r, world_size=2, pad=True)) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == math.ceil(n / 2)
    s = EpochSampler(20, seed=1)
    s.set_epoch(4)
    order = list(s)
    s.set_epoch(4, start=7)
    assert list(s) == order[7:]
    s.set_epoch(5)
    assert list(s) != order


def _val_iterations(run_dir) -> list[int]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["iteration"] for r in records if "val/count" in r]


def test_eval_at_start_can_keep_the_starting_weights_as_best(tmp_path, capsys):
    """val/count never improves (strict >), so the evaluation at iteration 0 stays the best: best.pt = start."""
    sets = ["train.iterations=1", "train.best_metric=val/count", "train.log_every=1"]
    small = dict(train=BlobDataset(64), val=BlobDataset(32, seed=1))
    t = make_trainer(quick_cfg(*sets, "train.eval_at_start=true"), tmp_path / "start", **small)
    start = {k: v.clone() for k, v in t.model.state_dict().items()}
    summary = t.fit()
    assert _val_iterations(tmp_path / "start") == [0, 1]
    best = load_checkpoint(tmp_path / "start/checkpoints/best.pt")
    assert best["train_state"]["best_iteration"] == 0 and best["train_state"]["iteration"] == 0
    for k, v in start.items():
        assert torch.equal(best["model"][k], v), k
    assert not all(torch.equal(t.model.state_dict()[k], v) for k, v in start.items())  # training moved
    assert summary["best"]["best_is_start"] is True and summary["best"]["iteration"] == 0
    saved = json.loads((tmp_path / "start/summary.json").read_text())
    assert saved["best"]["best_is_start"] is True
    err = capsys.readouterr().err
    assert (
        "fine-tuning did not beat the starting weights on validation (val/count 32.000 at iteration 0; "
        "last 32.000): best.pt holds the starting weights"
    ) in err
    # without the option: no evaluation at 0, the best is the first evaluation after training, no warning
    plain = make_trainer(quick_cfg(*sets), tmp_path / "plain", **small).fit()
    assert _val_iterations(tmp_path / "plain") == [1]
    assert plain["best"]["best_is_start"] is False and plain["best"]["iteration"] == 1
    assert "did not beat" not in capsys.readouterr().err


def test_eval_at_start_is_not_repeated_on_resume(tmp_path, capsys):
    cfg = quick_cfg("train.iterations=2", "train.best_metric=val/count", "train.eval_at_start=true")
    small = dict(train=BlobDataset(64), val=BlobDataset(32, seed=1))
    make_trainer(cfg, tmp_path, **small).fit(stop_at=1)
    assert _val_iterations(tmp_path) == [0]
    assert "did not beat" in capsys.readouterr().err  # one step was taken and the start is still the best
    summary = make_trainer(cfg, tmp_path, **small).fit(resume=True)
    assert _val_iterations(tmp_path) == [0, 2]  # the resumed run evaluated at its end only
    assert summary["best"]["iteration"] == 0 and summary["best"]["best_is_start"] is True
