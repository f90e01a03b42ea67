"""Whole runs: Hydra composes conf/, Lightning trains on tiny IDX data, the run dir is complete."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning import Callback, Trainer
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from mnist_mlp.errors import Diverged, UsageError
from mnist_mlp.inspection.classify import best_checkpoint
from mnist_mlp.run.build import build
from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.run.record import SCORES
from mnist_mlp.training.progress_bar import SGDStepsProgressBar
from tests.conftest import ROOT, TINY, run_cli, run_main


def events(run_dir: Path) -> EventAccumulator:
    """Everything TensorBoard reads from the run dir (fit and test each write an event file)."""
    return EventAccumulator(str(run_dir)).Reload()


def test_cli_run_writes_a_complete_run_dir(data_root: Path, tmp_path: Path) -> None:
    result = run_cli(*TINY, f"data.root={data_root}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.json")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(SCORES) <= metrics.keys()
    assert (
        metrics["batch_size"] == 32
        and metrics["epochs"] == 2
        and metrics["loss"] == "cross_entropy"
    )
    assert metrics["test/acc"] > 0.5  # the tiny data is learnable: chance is 0.1
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    scalars = events(run_dir).Tags()["scalars"]
    assert {"train/loss", *SCORES} <= set(scalars)
    assert "run dir" in result.stderr + result.stdout
    # Only what helps the user: no advertisement, no warning Lightning causes itself.
    assert "💡 Tip" not in result.stderr and "LeafSpec" not in result.stderr
    assert "FLOPs" not in result.stderr + result.stdout  # no model-summary table


def test_missing_data_stops_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main(
            f"data.root={tmp_path / 'nowhere'}",
            "data.download=false",
            f"hydra.run.dir={tmp_path / 'run'}",
            monkeypatch=monkeypatch,
        )
    assert stopped.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert "train-images-idx3-ubyte" in stderr and "nowhere/MNIST/raw" in stderr
    assert not (tmp_path / "nowhere").exists()  # nothing written where data was expected


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_both_losses_learn(make_cfg: Callable[..., DictConfig], tmp_path: Path, loss: str) -> None:
    lr = {"cross_entropy": 0.1, "mse": 0.5}[loss]
    metrics = fit_and_test(make_cfg(f"loss={loss}", f"lr={lr}"), tmp_path)
    assert metrics["loss"] == loss
    assert metrics["val/acc"] > 0.5 and metrics["test/acc"] > 0.5


def test_same_seed_same_metrics(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    first = fit_and_test(make_cfg("seed=7"), tmp_path / "a")
    again = fit_and_test(make_cfg("seed=7"), tmp_path / "b")
    other = fit_and_test(make_cfg("seed=8"), tmp_path / "c")
    scores = [{name: run[name] for name in SCORES} for run in (first, again, other)]
    assert scores[0] == scores[1]
    assert scores[0]["val/loss"] != scores[2]["val/loss"]


def hparams_data(run_dir: Path, tag: str) -> plugin_data_pb2.HParamsPluginData:
    content = events(run_dir).SummaryMetadata(tag).plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def test_hparams_tab_gets_the_settings_the_scores_and_the_status(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("lr=0.2"), tmp_path)
    # No experiment summary of its own: TensorBoard then compares the runs' settings itself and
    # shows first the keys that vary (with one per run it would take an arbitrary run's).
    assert "_hparams_/experiment" not in events(tmp_path).Tags()["tensors"]
    start = hparams_data(tmp_path, "_hparams_/session_start_info").session_start_info.hparams
    assert start["batch_size"].number_value == 32  # a number: a sweep's sizes sort as numbers
    assert start["lr"].number_value == 0.2 and start["model.nesterov"].bool_value is False
    assert start["model.hidden_sizes"].string_value == "[32]"
    # HParams ticks the first five metrics by name: the best checkpoint's scores, accuracy too.
    scalars = sorted(events(tmp_path).Tags()["scalars"])
    assert scalars[:4] == ["best/test/acc", "best/test/loss", "best/val/acc", "best/val/loss"]
    end = hparams_data(tmp_path, "_hparams_/session_end_info").session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS
    assert start["status"].string_value == "ok"  # a column too: HParams has none of its own
    # Each curve is one model's history: one point per epoch, none made up at step 0, none added
    # at the end by the best checkpoint (its scores are best/*).
    steps = [event.step for event in events(tmp_path).Scalars("val/acc")]
    assert steps == [16, 32]


def test_a_diverged_run_shows_as_failed_in_the_hparams_tab_and_says_why_in_the_text_tab(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    with pytest.raises(Diverged):
        fit_and_test(make_cfg("lr=1e6"), tmp_path)
    end = hparams_data(tmp_path, "_hparams_/session_end_info").session_end_info
    assert end.status == api_pb2.STATUS_FAILURE
    start = hparams_data(tmp_path, "_hparams_/session_start_info").session_start_info.hparams
    assert start["status"].string_value == "diverged" and start["lr"].number_value == 1e6
    (said,) = events(tmp_path).Tensors("status/text_summary")
    assert said.tensor_proto.string_val[0].decode().startswith("diverged: The loss became")


def test_last_checkpoint_holds_the_last_epoch(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # On the tiny data val/acc is at its best from the first epoch on, so no later epoch saves a
    # best checkpoint; last.ckpt must follow every epoch all the same (it is what a resume uses).
    fit_and_test(make_cfg("epochs=3"), tmp_path)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["sgd_steps"], last["global_step"]) == (2, 3 * 16, 3)
    # ...while a run dir given to predict/evaluate still means its best checkpoint.
    assert best_checkpoint(tmp_path).name.startswith("epoch00-")


def test_the_scores_are_the_best_checkpoints_not_the_last_weights(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # val/acc is at its best from the first epoch on (see above), while val/loss goes on falling:
    # the scores must be epoch 0's, whose weights are loaded back before scoring.
    metrics = fit_and_test(make_cfg("epochs=3"), tmp_path)
    val_losses = [event.value for event in events(tmp_path).Scalars("val/loss")]
    assert len(val_losses) == 3 and val_losses[0] != val_losses[-1]
    assert metrics["val/loss"] == pytest.approx(val_losses[0], rel=1e-6)
    assert metrics["best_checkpoint"].startswith("checkpoints/epoch00-")


def test_log_every_does_not_change_the_result(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    one = fit_and_test(make_cfg("log_every=1"), tmp_path / "one")
    five = fit_and_test(make_cfg("log_every=5"), tmp_path / "five")
    assert {name: one[name] for name in SCORES} == {name: five[name] for name in SCORES}
    # Lightning's step count, the x of the scalars, is the number of SGD steps taken: two epochs
    # of 500 training images in batches of 32, train/loss at the end of each interval.
    steps = [event.step for event in events(tmp_path / "five").Scalars("train/loss")]
    assert steps == [5, 10, 15, 16, 21, 26, 31, 32]
    assert len(events(tmp_path / "one").Scalars("train/loss")) == 32


class Seen(Callback):
    """What a fit did: the global step at each validation, the labels of each epoch's batches."""

    def __init__(self) -> None:
        self.validated_at: list[int] = []
        self.labels: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: Trainer, module, outputs, batch, batch_idx) -> None:
        self.labels.setdefault(trainer.current_epoch, []).extend(y for _, y in batch)

    def on_validation_end(self, trainer: Trainer, module) -> None:
        if not trainer.sanity_checking:
            self.validated_at.append(module.sgd_steps)


def fit(make_cfg: Callable[..., DictConfig], run_dir: Path, *overrides: str) -> tuple:
    """Fit through the project's own wiring; the trainer and what was seen."""
    datamodule, model, trainer = build(make_cfg(*overrides), run_dir)
    seen = Seen()
    trainer.callbacks.append(seen)
    trainer.fit(model, datamodule=datamodule)
    return trainer, seen


# The tiny training split: 500 images, 16 mini-batches of 32 an epoch; with log_every=5, four
# intervals (Lightning steps) of 5, 5, 5 and 1 SGD steps.
@pytest.mark.parametrize(
    ("override", "sgd_steps"),
    [
        ("+trainer.limit_train_batches=3", 2 * 15),  # an int: intervals per epoch
        ("+trainer.limit_train_batches=0.5", 2 * 10),  # a float: a share of the intervals
        ("+trainer.max_steps=7", 31),  # Lightning's steps: 7 intervals
        ("+trainer.fast_dev_run=3", 15),
    ],
)
def test_trainer_options_that_count_batches_count_intervals(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, override: str, sgd_steps: int
) -> None:
    trainer, _ = fit(make_cfg, tmp_path, "log_every=5", override)
    assert trainer.lightning_module.sgd_steps == sgd_steps


def test_val_check_interval_counts_intervals(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    _, seen = fit(make_cfg, tmp_path, "log_every=5", "+trainer.val_check_interval=2")
    assert seen.validated_at == [10, 16, 26, 32]  # after 2 and 4 of 4 intervals an epoch


def test_overfit_batches_trains_on_the_same_mini_batches_every_epoch(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    trainer, seen = fit(make_cfg, tmp_path, "log_every=1", "+trainer.overfit_batches=2")
    assert trainer.lightning_module.sgd_steps == 2 * 2
    first, second = (torch.cat(seen.labels[epoch]) for epoch in (0, 1))
    assert len(first) == 2 * 32 and torch.equal(first, second)


def test_a_lightning_step_is_an_interval_of_sgd_steps(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    trainer, seen = fit(make_cfg, tmp_path)  # log_every=50: the whole epoch in one interval
    assert trainer.lightning_module.sgd_steps == 2 * 16 and seen.validated_at == [16, 32]
    assert len(seen.labels[0]) == 16  # mini-batches, taken in one Lightning step
    assert trainer.global_step == 2  # Lightning counts intervals


STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


class Listening(Callback):
    """Counts Lightning's hooks around each SGD step."""

    def __init__(self) -> None:
        self.calls = dict.fromkeys(STEP_HOOKS, 0)

    def on_before_backward(self, trainer: Trainer, module, loss) -> None:
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer: Trainer, module) -> None:
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer: Trainer, module, optimizer) -> None:
        self.calls["on_before_optimizer_step"] += 1


@pytest.mark.parametrize("listener", ["none", "study"])
def test_every_sgd_step_takes_one_path_whoever_listens(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, listener: str
) -> None:
    """The same hooks and the same weights with or without the study's callback listening: the
    study times what a default run does."""
    overrides = ["study.target=1.01"] if listener == "study" else []  # a target never reached
    datamodule, model, trainer = build(make_cfg(*overrides), tmp_path / listener)
    listening = Listening()
    trainer.callbacks.append(listening)
    trainer.fit(model, datamodule=datamodule)
    assert model.sgd_steps == 2 * 16 and trainer.global_step == 2
    # Lightning's optimizer takes each interval's last step; the backward is torch's own.
    assert listening.calls == {
        "on_before_backward": 0,
        "on_after_backward": 0,
        "on_before_optimizer_step": trainer.global_step,
    }
    reference = build(make_cfg(), tmp_path / f"{listener}-reference")
    reference[2].fit(reference[1], datamodule=reference[0])
    for trained, plain_run in zip(model.parameters(), reference[1].parameters(), strict=True):
        assert torch.equal(trained, plain_run)


@pytest.mark.parametrize(
    ("preset", "sgd_steps", "epochs_run"),
    # The tests' epochs=2 wins over the presets' epochs, as any key on the command line does.
    [("fast_dev_run", 3, 1), ("limit", 2 * 20, 2), ("profiler", 2 * 16, 2)],
)
def test_debug_presets_do_what_their_names_say(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    preset: str,
    sgd_steps: int,
    epochs_run: int,
) -> None:
    # batch_size=8: 63 mini-batches an epoch of the tiny data, so limit's 20 is a real limit.
    smaller = ["batch_size=8"] if preset == "limit" else []
    with caplog.at_level(logging.INFO):
        trainer, _ = fit(make_cfg, tmp_path, f"debug={preset}", *smaller)
    assert trainer.lightning_module.sgd_steps == sgd_steps
    assert trainer.current_epoch == epochs_run
    if preset == "profiler":
        assert "FIT Profiler Report" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "steps"),
    # 500 images in batches of 8: 63 SGD steps an epoch, in 7 intervals of up to 10.
    [
        (("batch_size=8", "log_every=10"), 63),
        (("batch_size=8", "log_every=1", "+trainer.limit_train_batches=5"), 5),
    ],
)
def test_the_progress_bar_counts_sgd_steps(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, overrides: tuple, steps: int
) -> None:
    trainer, _ = fit(make_cfg, tmp_path, "epochs=1", *overrides)
    (bar,) = [cb for cb in trainer.callbacks if isinstance(cb, SGDStepsProgressBar)]
    assert bar.train_progress_bar.total == bar.train_progress_bar.n == steps


def test_the_lr_and_a_train_val_chart_are_in_tensorboard(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("epochs=3", "lr=0.3"), tmp_path)  # cosine: 0.3, 0.225, 0.075
    logged = events(tmp_path)
    lrs = [(event.step, round(event.value, 4)) for event in logged.Scalars("train/lr")]
    assert lrs == [(16, 0.3), (32, 0.225), (48, 0.075)]  # at each interval's end: one an epoch
    assert "custom_scalars__config__" in logged.Tags()["tensors"]


def test_debug_overfit_learns_one_mini_batch_by_heart(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("debug=overfit", "epochs=40"), tmp_path)
    accuracy = [event.value for event in events(tmp_path).Scalars("train/acc")]
    assert len(accuracy) == 40 and accuracy[0] < 0.5 and accuracy[-1] == 1.0


def test_other_loggers_run_without_the_tensorboard_only_parts(
    make_cfg: Callable[..., DictConfig],
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv = fit_and_test(make_cfg("logger=csv"), tmp_path / "csv")
    assert csv["status"] == "ok"
    logged = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/acc", "test/acc"} <= set(logged)
    # logger=null as a user types it (Hydra itself would only take ~logger).
    run_main(
        f"data.root={data_root}",
        *TINY,
        "logger=null",
        f"hydra.run.dir={tmp_path / 'none'}",
        monkeypatch=monkeypatch,
    )
    none = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert none["status"] == "ok" and (tmp_path / "none" / none["best_checkpoint"]).is_file()
    for run in ("csv", "none"):
        assert not list((tmp_path / run).glob("events.out.tfevents.*"))


def test_experiment_notes_is_the_notes_network_and_training(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["experiment=notes"])
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.loss) == (10, 3.0, 30, "mse")
    model, data = cfg.model, cfg.data
    assert list(model.hidden_sizes) == [30] and model.activation == model.outputs == "sigmoid"
    assert (model.init, model.lr_schedule) == ("normal", "constant")
    assert (data.val_size, data.val_split, data.inputs) == (10000, "last", "unit")
    # And it trains, on the tiny data (whose batch_size=32 and epochs=2 win, as on a command line).
    metrics = fit_and_test(make_cfg("experiment=notes", "data.val_size=100"), tmp_path)
    assert metrics["status"] == "ok" and metrics["test/acc"] > 0.5


def test_experiment_best_is_what_was_measured_and_it_trains(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["experiment=best"])
    assert (cfg.batch_size, cfg.lr, cfg.epochs) == (128, 0.05, 30)
    model = cfg.model
    assert (model.momentum, model.nesterov, model.weight_decay) == (0.9, True, 5e-4)
    metrics = fit_and_test(make_cfg("experiment=best"), tmp_path)
    assert metrics["status"] == "ok" and metrics["test/acc"] > 0.5


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_the_optional_loggers_log_offline_into_the_run_dir(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, logger: str
) -> None:
    pytest.importorskip(logger, reason=f"logger={logger} needs the [loggers] extra")
    metrics = fit_and_test(make_cfg(f"logger={logger}", "epochs=1"), tmp_path)
    assert metrics["status"] == "ok"
    assert (tmp_path / metrics["best_checkpoint"]).parent == tmp_path / "checkpoints"
    if logger == "wandb":  # kept for `wandb sync`
        assert list((tmp_path / "wandb").glob("offline-run-*"))
    else:
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("mnist-mlp").experiment_id])
        assert {"val/acc", "train/loss", "test/acc"} <= set(run.data.metrics)


def test_a_logger_whose_package_is_missing_is_named_in_one_sentence(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(*args: object, **kwargs: object) -> None:  # what Lightning raises then
        raise ModuleNotFoundError("Requirement 'wandb>=0.12.10' not met")

    monkeypatch.setattr(WandbLogger, "__init__", not_installed)
    with pytest.raises(UsageError, match=r"WandbLogger needs a package .*mnist-mlp\[loggers\]"):
        build(make_cfg("logger=wandb"), tmp_path)
