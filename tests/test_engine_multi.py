"""Several networks and optimizers through the one Trainer (GANs, CycleMatch, JMC): isolation of gradients,
steps per optimizer, freezing by stage, EMA, bit-exact resume, and a toy GAN that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from imagexplore.config import load_config
from imagexplore.engine import GatheringEvaluator, RecallAtK, Task, Trainer


class Ring(Dataset):
    """(real 2-D point from 8 Gaussians on a ring, noise z): the noise is part of the sample, so every loss is a
    fixed function of (parameters, batch) and a hand-computed reference can follow the Trainer exactly."""

    def __init__(self, n: int = 512, seed: int = 0, modes: int = 8, std: float = 0.05):
        g = torch.Generator().manual_seed(seed)
        k = torch.randint(0, modes, (n,), generator=g)
        angle = 2 * math.pi * k.float() / modes
        self.x = torch.stack([angle.cos(), angle.sin()], 1) + std * torch.randn(n, 2, generator=g)
        self.z = torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.z[i]


def mlp(i, o, h=32):
    return nn.Sequential(
        nn.Linear(i, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Linear(h, o)
    )


class ToyGAN(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.G, self.D = mlp(2, 2), mlp(2, 1)


def d_loss(model, real, z):
    fake = model.G(z).detach()
    return F.softplus(-model.D(real)).mean() + F.softplus(model.D(fake)).mean()


def g_loss(model, z):
    return F.softplus(-model.D(model.G(z))).mean()


class GANTask(Task):
    def __init__(self, own_optimizers: bool = False, lr: float = 0.1):
        self.own, self.lr = own_optimizers, lr

    def configure_optimizers(self, model, cfg):
        if not self.own:
            return super().configure_optimizers(model, cfg)
        return {  # built by the task itself, as the engine allowed before named optimizer sections
            "D": torch.optim.SGD(model.D.parameters(), lr=self.lr),
            "G": torch.optim.SGD(model.G.parameters(), lr=self.lr),
        }

    def training_step(self, model, batch, optimizer):
        real, z = batch
        loss = d_loss(model, real, z) if optimizer == "D" else g_loss(model, z)
        return loss, {}


def gan_cfg(*overrides):
    base = [
        "data.batch_size=32",
        "train.device=cpu",
        "train.tensorboard=false",
        "train.log_every=1000",
        "schedule.name=constant",
        "optim.momentum=0",
        "optim.weight_decay=0",
    ]
    return load_config(None, base + list(overrides))


def test_generator_backward_does_not_leak_into_discriminator_when_accumulating(tmp_path):
    """accumulate=2, one iteration over all 64 samples: D must move by exactly -lr ∇_D L_D(all; G0, D0). Before the
    fix, G's backward on the first micro-batch left its gradient in D.grad, which D's step then used."""
    data = Ring(64)
    model = ToyGAN()
    ref = ToyGAN()
    real, z = data.x, data.z
    grads = torch.autograd.grad(d_loss(ref, real, z), list(ref.D.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(ref.D.parameters(), grads)]
    cfg = gan_cfg("train.iterations=1", "train.accumulate=2", "train.eval_every=0")
    Trainer(cfg, model, GANTask(own_optimizers=True), data, None, tmp_path, show_progress=False).fit()
    for p, e in zip(model.D.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """2 E|X−Y| − E|X−X'| − E|Y−Y'| (Székely): 0 iff the distributions agree."""
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


class SampleDistance(GatheringEvaluator):
    """Energy distance between the evaluation set's real points and the generator's points for its noise."""

    def update(self, real, fake):
        self.keep(real=real, fake=fake)

    def _compute_all(self, indices, results):
        return {"energy": energy_distance(results["real"], results["fake"]), "count": float(len(indices))}


class EvalGANTask(GANTask):
    def __init__(self, recall: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.recall = recall

    def evaluators(self):
        return {"": SampleDistance(), **({"recall": RecallAtK()} if self.recall else {})}

    def evaluation_step(self, model, batch, evaluators):
        real, z = batch
        fake = model.G(z)
        evaluators[""].update(real, fake)
        if self.recall:  # pairs (generated point i, real point i): recall@K over all of them
            evaluators["recall"].update(fake, real)


GAN_RECIPE = [
    "optimizers.D.module=D",
    "optimizers.D.optim={name: adam, lr: 0.002, betas: [0.5, 0.999], weight_decay: 0}",
    "optimizers.G.module=G",
    "optimizers.G.optim={name: adam, lr: 0.002, betas: [0.5, 0.999], weight_decay: 0}",
    "train.ema={module: G, decay: 0.99}",
    "train.best_metric=val/energy",
    "train.best_mode=min",
]


def test_toy_gan_learns_through_the_trainer(tmp_path):
    """Two optimizers, EMA generator evaluated by a gathering evaluator: the samples approach the ring."""
    cfg = gan_cfg("train.iterations=300", "data.batch_size=64", "train.eval_every=0", *GAN_RECIPE)
    trainer = Trainer(
        cfg, ToyGAN(), EvalGANTask(), Ring(1024), Ring(512, seed=1), tmp_path, show_progress=False
    )
    before = trainer.evaluate()["val/energy"]
    after = trainer.fit()["final"]["val/energy"]
    assert after < 0.5 * before, (before, after)  # seen here: 0.650 → 0.155


def _gan_trainer(run_dir, *extra):
    cfg = gan_cfg("train.iterations=8", "data.batch_size=32", "train.eval_every=0", *GAN_RECIPE, *extra)
    return Trainer(cfg, ToyGAN(), EvalGANTask(), Ring(128), Ring(64, seed=1), run_dir, show_progress=False)


def test_resume_is_bit_exact_with_two_optimizers_and_ema(tmp_path):
    straight = _gan_trainer(tmp_path / "a")
    straight.fit()
    stopped = _gan_trainer(tmp_path / "b")
    stopped.fit(stop_at=5)  # mid-epoch (4 iterations per epoch)
    resumed = _gan_trainer(tmp_path / "b")
    resumed.fit(resume=True)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(
        straight.ema.module[0].weight, straight.model.G[0].weight
    )  # the average is its own
    for n in ("D", "G"):
        sa, sb = straight.optimizers[n].state_dict()["state"], resumed.optimizers[n].state_dict()["state"]
        assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    from imagexplore.engine import load_checkpoint

    ck = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert ck["ema"]["module"] == "G" and set(ck["optimizers"]) == {"D", "G"}


def test_critic_steps_and_stages(tmp_path):
    """D: 3 steps per iteration; stage 0 trains D alone with G frozen, stage 1 (from iteration 2) both."""
    extra = [
        "optimizers.D.steps=3",
        "train.stages=[{name: critic, start: 0, optimizers: [D], freeze: ['^G\\.']}, {name: all, start: 2}]",
        "train.ema=null",
    ]
    t = _gan_trainer(tmp_path, *extra)
    g0 = [p.detach().clone() for p in t.model.G.parameters()]
    t.fit(stop_at=2)
    assert all(torch.equal(a, b) for a, b in zip(g0, t.model.G.parameters()))  # frozen in stage 0
    d_state = t.optimizers["D"].state_dict()["state"]
    assert all(int(s["step"]) == 6 for s in d_state.values())  # 2 iterations × 3 steps
    assert t.schedulers["D"].last_epoch == 2  # the schedule counts iterations, not steps
    t.fit()
    assert not all(torch.equal(a, b) for a, b in zip(g0, t.model.G.parameters()))
    assert all(int(s["step"]) == 24 for s in t.optimizers["D"].state_dict()["state"].values())
    assert all(p.requires_grad for p in t.model.parameters())  # handed back as it came


@pytest.mark.parametrize(
    "extra, message",
    [
        (["optimizers.G.module=D"], "is trained by two optimizers"),
        (["optimizers.G.module=H"], "optimizers.G.module: the model has no child 'H'; its children: G, D"),
        (["train.freeze=['^nothing']"], "train.freeze: '^nothing' matches no parameter name"),
        (["train.stages=[{optimizers: [E]}]"], "train.stages[0].optimizers: unknown 'E'"),
        (["optimizers.D.steps=2", "train.accumulate=2"], "steps > 1 needs train.accumulate = 1"),
        (["train.ema.decay=1.5"], "'train.ema.decay' must be ≥ 0 and ≤ 1"),
    ],
)
def test_bad_multi_network_configs_are_one_line(tmp_path, extra, message):
    from imagexplore.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _gan_trainer(tmp_path, *extra)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_gathering_evaluator_orders_by_index_and_drops_repeats():
    from imagexplore.engine import RecallAtK
    from imagexplore.engine.evaluators import recall_at_k

    a = torch.eye(5)
    b = torch.eye(5)
    b[3] = torch.tensor([0.0, 0.0, 1.0, 0.1, 0.0])  # text 3 is closer to image 2 than to image 3
    ev = RecallAtK(ks=(1, 5))
    for idx in ([4, 0], [2, 1, 3], [4]):  # out of order, and sample 4 twice (a padded shard)
        ev.set_batch_indices(torch.tensor(idx))
        ev.update(a[idx], b[idx])
    got = ev.compute()
    assert got == recall_at_k(a, b, (1, 5)) and got["count"] == 5
    # by hand: every image finds its own text first (image 3: cos 0.0995 with text 3, 0 with the others), so
    # a→b R@1 = 100; text 3 finds image 2 (cos 0.995) before image 3 (cos 0.0995): b→a R@1 = 80, ranks 1,1,1,2,1
    assert got["a2b_r1"] == 100.0
    assert got["b2a_r1"] == 80.0  # text 3 finds image 2 first (cos 0.995 > 0.0995)
    assert got["b2a_medr"] == 1.0 and got["b2a_meanr"] == pytest.approx(6 / 5)


def test_grouped_sampler_keeps_groups_apart():
    from imagexplore.engine.sampler import GroupedEpochSampler

    groups = [i // 5 for i in range(503)]  # 5 captions per image
    for world in (1, 2):
        shards = []
        for rank in range(world):
            s = GroupedEpochSampler(groups, 16, seed=1, rank=rank, world_size=world)
            s.set_epoch(3)
            idx = list(s)
            shards.append(idx)
            full = len(idx) - len(idx) % 16
            assert all(len({groups[j] for j in idx[k : k + 16]}) == 16 for k in range(0, full, 16))
        assert sorted(set(sum(shards, []))) == list(range(503))
        assert len({len(x) for x in shards}) == 1


@pytest.mark.slow
def test_two_process_gan_and_gathering_equal_single_process(tmp_path):
    """torchrun, 2 gloo ranks of batch 16 = one process of batch 32: same weights (DDP averages the same samples'
    gradients, one DDP module per network), and recall@K gathered over 101 samples (51 + 50) is exactly the
    single-process value for the same weights."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from imagexplore.engine import load_checkpoint

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    worker = Path(__file__).parent / "dist_worker_multi.py"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
    ]
    proc = subprocess.run([*cmd, str(tmp_path / "ddp")], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "ddp" / "dist_result.json").read_text())
    assert res["world_size"] == 2 and res["wrapped"] == ["D", "G"]
    assert res["eval"]["val/recall/count"] == 101 and res["eval"]["val/count"] == 101

    cfg = gan_cfg("train.iterations=8", "data.batch_size=32", "train.eval_every=0", *GAN_RECIPE)
    single = Trainer(
        cfg,
        ToyGAN(),
        EvalGANTask(recall=True),
        Ring(128),
        Ring(101, seed=1),
        tmp_path / "one",
        show_progress=False,
    )
    single.fit()
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ck["model"][name], value, rtol=1e-4, atol=1e-5)
    single.model.load_state_dict(ck["model"])  # now the very same weights: evaluation must agree exactly
    single.ema.load_state_dict(ck["ema"]["state"])
    again = single.evaluate()
    for key in ("a2b_r1", "a2b_r5", "a2b_r10", "b2a_r1", "a2b_medr", "b2a_meanr", "rsum"):
        assert again[f"val/recall/{key}"] == res["eval"][f"val/recall/{key}"], key
    assert again["val/energy"] == pytest.approx(res["eval"]["val/energy"], abs=1e-6)


class GalleryTask(EvalGANTask):
    """Hooks a task can own: after-evaluation artefacts (a PNG of samples + an HTML page) and its own state."""

    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def after_evaluation(self, model, metrics, run_dir, iteration, tensorboard):
        from PIL import Image, ImageDraw

        self.evaluations += 1
        with torch.no_grad():
            points = model.G(torch.randn(256, 2, generator=torch.Generator().manual_seed(0)))
        img = Image.new("RGB", (128, 128), "white")
        draw = ImageDraw.Draw(img)
        for x, y in ((points.clamp(-2, 2) + 2) * 32).tolist():
            draw.point((x, y), fill="black")
        out = run_dir / "samples"
        out.mkdir(parents=True, exist_ok=True)
        img.save(out / f"{iteration}.png")
        (out / "index.html").write_text("".join(f'<img src="{p.name}">' for p in sorted(out.glob("*.png"))))

    def state_dict(self):
        return {"evaluations": self.evaluations}

    def load_state_dict(self, state):
        self.evaluations = state["evaluations"]


def test_task_hooks_write_artefacts_and_keep_state(tmp_path):
    cfg = gan_cfg(
        "train.iterations=8",
        "data.batch_size=32",
        "train.eval_every=0",
        "train.eval_every_iters=4",
        *GAN_RECIPE,
    )

    def trainer():
        return Trainer(
            cfg, ToyGAN(), GalleryTask(), Ring(128), Ring(64, seed=1), tmp_path, show_progress=False
        )

    first = trainer()
    first.fit(stop_at=5)
    assert first.task.evaluations == 1 and (tmp_path / "samples" / "4.png").is_file()
    resumed = trainer()
    resumed.fit(resume=True)
    assert (
        resumed.task.evaluations == 2
    )  # restored from the checkpoint's task_state, then one more evaluation
    assert '<img src="8.png">' in (tmp_path / "samples" / "index.html").read_text()
