"""batch_size=auto: a batch size for each interval, from the measured noise scale."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from mnist_mlp.config.checks import check_config
from mnist_mlp.config.schema import linear_scaling_lr
from mnist_mlp.errors import UsageError
from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.training.auto_batch import next_batch_size
from mnist_mlp.training.data import Intervals, epoch_order
from mnist_mlp.training.progress_bar import SGDStepsProgressBar
from tests.conftest import ROOT
from tests.test_train import events, fit, hparams_data

# The tiny training split has 500 images: intervals of 64 examples, batches from 2 to 32.
AUTO = [
    "batch_size=auto", "auto_batch.smallest=2", "auto_batch.largest=32",
    "auto_batch.every_examples=64", "model.lr_schedule=constant", "lr=0.4",
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "b_simple", "chosen"),
    [
        (16, 70.0, 32),  # at most twice the last
        (32, 70.0, 64),
        (64, 100.0, 64),  # not yet twice 64
        (64, 130.0, 128),
        (128, 90.0, 128),  # not yet half: no flipping around a midpoint
        (128, 60.0, 64),
        (256, 5.0, 128),  # at most halved
        (32, 1e6, 64),
        (512, 1e6, 512),  # at most the largest
        (16, 3.0, 16),  # at least the smallest
        (64, math.nan, 128),  # noise swamps the gradient: bigger
    ],
)
def test_the_choice_follows_the_noise_scale_within_its_bounds_and_step(
    current: int, b_simple: float, chosen: int
) -> None:
    assert next_batch_size(current, b_simple, smallest=16, largest=512) == chosen


def test_a_batch_change_mid_epoch_still_shows_every_example_once() -> None:
    images, labels = torch.arange(100.0).view(100, 1), torch.arange(100)
    intervals = Intervals(
        images, labels, 4, lambda: epoch_order(100, seed=1, epoch=0), interval_examples=16
    )
    seen, sizes = [], []
    for number, interval in enumerate(intervals):
        intervals.batch_size = [4, 8, 16, 2, 8, 16, 4][number]  # changed as each one starts
        for _, batch_labels in interval:
            seen += batch_labels.tolist()
            sizes.append(len(batch_labels))
    assert len(intervals) == 7 and sorted(seen) == list(range(100))
    assert sizes == [4] * 4 + [8] * 2 + [16] + [2] * 8 + [8] * 2 + [16] + [4]


def test_an_auto_run_chooses_its_batches_from_the_noise_scale_and_shows_them(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    metrics = fit_and_test(make_cfg(*AUTO, "epochs=3"), tmp_path)
    assert metrics["status"] == "ok" and metrics["batch_size"] == "auto"
    trace = metrics["batch_size_trace"]  # each interval: steps, examples, B_simple, batch, lr
    assert len(trace) == 3 * math.ceil(500 / 64)
    for (_, _, b_simple, size, lr), (*_, following, _) in zip(trace, trace[1:], strict=False):
        noise = math.nan if b_simple is None else b_simple
        assert following == next_batch_size(size, noise, smallest=2, largest=32)
        # lr=0.4 is the lr at batch 64 (0.2 on the study's rule): twice the rule at every batch
        assert lr == pytest.approx(2 * linear_scaling_lr(size, 1))
    assert len({size for *_, size, _ in trace}) > 2  # it did move
    assert metrics["batch_size_first"] == 2 and metrics["batch_size_last"] == trace[-1][3]
    assert len(metrics["batch_size_by_epoch"]) == 3
    logged = events(tmp_path)
    sizes = [event.value for event in logged.Scalars("train/batch_size")]
    assert sizes == [size for *_, size, _ in trace]
    examples = [(event.step, event.value) for event in logged.Scalars("train/examples")]
    assert examples == [(steps, seen) for steps, seen, *_ in trace]
    assert examples[-1][1] == 3 * 500  # every example once per epoch
    assert [event.step for event in logged.Scalars("noise/b_simple")][:3] == [
        steps for steps, *_ in trace[:3]
    ]
    # HParams: no text among the numbers of a sweep's batch_size column; auto_batch.* say it
    start = hparams_data(tmp_path, "_hparams_/session_start_info").session_start_info.hparams
    assert "batch_size" not in start and start["auto_batch.largest"].number_value == 32


def test_a_resumed_auto_run_goes_on_with_the_batch_size_and_lr_in_force(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    unbroken = fit_and_test(make_cfg(*AUTO, "epochs=2"), tmp_path / "unbroken")
    fit_and_test(make_cfg(*AUTO, "epochs=1"), tmp_path / "broken")
    last = tmp_path / "broken" / "checkpoints" / "last.ckpt"
    resumed = fit_and_test(make_cfg(*AUTO, "epochs=2", f"ckpt_path={last}"), tmp_path / "broken")
    assert resumed["batch_size_trace"] == unbroken["batch_size_trace"]
    assert resumed["test/acc"] == unbroken["test/acc"]


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("auto_batch.smallest=24", "auto_batch.smallest=24 is not allowed: use a power of two"),
        ("auto_batch.smallest=64", "auto_batch.largest=32 is not allowed: use at least"),
        ("auto_batch.every_examples=48", "use a multiple of auto_batch.largest=32"),
        ("model.noise_scale=false", "batch_size=auto chooses each batch from the measured noise"),
        ("trainer=ddp_cpu", "batch_size='auto' is not allowed: with trainer.strategy=ddp"),
    ],
)
def test_auto_refuses_what_it_cannot_work_with(
    make_cfg: Callable[..., DictConfig], override: str, said: str
) -> None:
    with pytest.raises(UsageError, match=said.replace("(", r"\(").replace(".", r"\.")):
        check_config(make_cfg(*AUTO, override))


def test_the_study_takes_auto_as_one_more_contestant(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg("experiment=batch_size", "batch_size=auto", "study.lr_factor=2")
    assert cfg.lr == 2 * linear_scaling_lr(64, 1)  # the lr at batch 64, moved with the batch
    check_config(cfg)
    study = OmegaConf.load(ROOT / "conf" / "experiment" / "batch_size.yaml")
    assert "auto" in study.hydra.sweeper.params.batch_size.split(",")


def test_the_progress_bar_ends_on_the_sgd_steps_taken(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    trainer, _ = fit(make_cfg, tmp_path, *AUTO, "epochs=1")
    (bar,) = [cb for cb in trainer.callbacks if isinstance(cb, SGDStepsProgressBar)]
    steps = trainer.lightning_module.sgd_steps
    assert bar.train_progress_bar.total == bar.train_progress_bar.n == steps > 500 / 32


@pytest.mark.parametrize("backprop", ["manual", "per_example"])
def test_auto_works_with_the_written_out_backward_passes(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, backprop: str
) -> None:
    metrics = fit_and_test(make_cfg(*AUTO, "epochs=1", f"model.backprop={backprop}"), tmp_path)
    assert metrics["status"] == "ok"
    assert len({size for *_, size, _ in metrics["batch_size_trace"]}) > 1
