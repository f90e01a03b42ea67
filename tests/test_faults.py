"""Faults a user meets end in one sentence and a non-zero exit, and lose nothing already done."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import mnist_mlp.run.fit as wiring
from mnist_mlp.config.checks import check_config
from mnist_mlp.errors import Diverged, Interrupted, UsageError
from mnist_mlp.run import folder_lock
from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.run.record import SCORES
from mnist_mlp.run.task import resumed_run_dir
from tests.conftest import ROOT, TINY, run_cli, run_main


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("batch_size=0", "batch_size=0"),
        ("lr=-0.1", "lr=-0.1"),
        ("lr=inf", "lr=inf"),
        ("model.hidden_sizes=[32,0]", "model.hidden_sizes"),
        ("model.momentum=-1", "model.momentum=-1"),
        ("model.nesterov=true", "model.nesterov"),
        ("seed=-1", "seed=-1"),
        ("data.val_size=0", "data.val_size=0"),
        ("trainer.log_every_n_steps=10", "trainer.log_every_n_steps=10"),
        ("+trainer.accumulate_grad_batches=4", "trainer.accumulate_grad_batches=4"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(
    make_cfg: Callable[..., DictConfig], override: str, key: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check_config(make_cfg(override))
    message = str(caught.value)
    assert message.startswith(key) and "not allowed: " in message


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("epochs=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
        ("loss=hinge", "Invalid value 'hinge', expected one of [cross_entropy, mse]"),
        ("model.activation=softplus", "Invalid value 'softplus', expected one of [relu, sigmoid"),
        ("model.lr_schedule=step", "Invalid value 'step', expected one of [constant, cosine]"),
        ("data.dataset=CIFAR10", "Invalid value 'CIFAR10', expected one of [MNIST, FashionMNIST]"),
    ],
)
def test_a_wrong_type_or_name_is_refused_by_the_schema(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    override: str,
    said: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main(override, f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run dir


# Run train.py in a new process and report, on the last line, whether torch was imported.
WITHOUT_TORCH = """
import runpy, sys
sys.argv = ["train.py", *sys.argv[1:]]
try:
    runpy.run_path("train.py", run_name="__main__")
except SystemExit as stop:
    print(stop.code)
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["lr=0"], "lr=0.0 is not allowed: use a number > 0"),
        (["batch_size=abc"], "batch_size='abc' is not allowed: use a positive whole number"),
        (["--help"], "== Configuration groups =="),
        (["--cfg", "job"], "batch_size: 64"),
    ],
)
def test_help_config_and_bad_settings_answer_before_torch_is_imported(
    tmp_path: Path, args: list[str], said: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert said in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "torch imported: False"
    assert "Traceback" not in result.stderr


def test_an_unknown_key_keeps_hydras_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main("batch_sise=32", f"hydra.run.dir={tmp_path}", monkeypatch=monkeypatch)
    assert stopped.value.code == 1
    assert "Could not override 'batch_sise'" in capsys.readouterr().err


def test_divergence_stops_the_run_at_the_step_and_records_it(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # The suggested lr is one the batch-size study found stable at batch 32, not 1e5.
    stable = r"smaller lr, e\.g\. lr=0\.1\.$"
    with pytest.raises(Diverged, match=r"at step \d+ \(epoch 0\).*" + stable):
        fit_and_test(make_cfg("lr=1e6", "epochs=3"), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["epochs_run"] == 0
    assert metrics["val/acc"] is None


@pytest.mark.parametrize(
    ("poisoned", "reported"),
    # 16 SGD steps per epoch on the tiny data; losses are read every 5 steps.
    [(8, "step 8 (epoch 0)"), (19, "step 19 (epoch 1)")],
)
def test_divergence_names_the_first_step_whose_loss_is_not_finite(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    poisoned: int,
    reported: str,
) -> None:
    build = wiring.build

    def build_with_poison(cfg: DictConfig, run_dir: Path):
        datamodule, model, trainer = build(cfg, run_dir)
        gradient, steps = model.gradient, iter(range(10**6))

        def poisoning(images, labels, example_norms):  # a nan weight just before step `poisoned`
            if next(steps) == poisoned:
                model.layers[0].weight.data[0, 0] = float("nan")
            return gradient(images, labels, example_norms)

        model.gradient = poisoning
        return datamodule, model, trainer

    monkeypatch.setattr(wiring, "build", build_with_poison)
    with pytest.raises(Diverged, match=rf"The loss became nan at {re.escape(reported)} "):
        fit_and_test(make_cfg("log_every=5"), tmp_path)


class SendSignal(Callback):
    """Sends this process a real signal in the middle of a training epoch."""

    def __init__(self, signal_number: int, epoch: int) -> None:
        self.signal_number, self.epoch = signal_number, epoch

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 3:
            os.kill(os.getpid(), self.signal_number)


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """Lightning ignores SIGINT after Ctrl-C while it shuts down; give pytest its handlers back."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_metrics(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signal_handlers: None,
    signal_number: int,
) -> None:
    # One mini-batch per Lightning step, so the signal lands in the middle of an epoch.
    settings = ["epochs=3", "log_every=1"]
    unbroken = fit_and_test(make_cfg(*settings), tmp_path / "unbroken")

    build = wiring.build

    def build_with_signal(cfg: DictConfig, run_dir: Path):
        datamodule, model, trainer = build(cfg, run_dir)
        if cfg.ckpt_path is None:
            trainer.callbacks.append(SendSignal(signal_number, epoch=1))
        return datamodule, model, trainer

    monkeypatch.setattr(wiring, "build", build_with_signal)
    run_dir = tmp_path / "interrupted"
    with pytest.raises(
        Interrupted, match="epoch 1: .*last.ckpt holds the last finished epoch"
    ) as caught:
        fit_and_test(make_cfg(*settings), run_dir)
    assert caught.value.exit_code == 128 + signal_number
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = fit_and_test(make_cfg(*settings, f"ckpt_path={last}"), run_dir)
    assert {name: resumed[name] for name in SCORES} == {name: unbroken[name] for name in SCORES}
    assert resumed["status"] == "ok" and resumed["epochs_run"] == 3


def test_resuming_with_other_settings_is_refused(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    common = [f"data.root={data_root}", *TINY, "epochs=1"]
    run_main(*common, f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    last = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as stopped:
        run_main(
            *common,
            "lr=0.5",
            f"ckpt_path={last}",
            f"hydra.run.dir={tmp_path / 'again'}",
            monkeypatch=monkeypatch,
        )
    assert stopped.value.code == 1
    assert "trained with lr=0.2, but this run says lr=0.5" in capsys.readouterr().err


def test_a_finished_sweep_dir_is_never_overwritten(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = tmp_path / "sweep" / "0" / "metrics.json"
    finished.parent.mkdir(parents=True)
    finished.write_text('{"status": "ok"}')
    with pytest.raises(SystemExit, match="already holds finished runs"):
        run_main(
            "-m",
            f"data.root={data_root}",
            *TINY,
            "lr=0.1,0.2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            monkeypatch=monkeypatch,
        )
    assert finished.read_text() == '{"status": "ok"}'
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["0"]


def test_the_saved_hydra_config_reproduces_the_run(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    run_main(
        f"data.root={data_root}", *TINY, "seed=3", f"hydra.run.dir={first}", monkeypatch=monkeypatch
    )
    again = tmp_path / "again"
    run_main(
        "--config-path",
        str(first / ".hydra"),
        "--config-name",
        "config",
        f"hydra.run.dir={again}",
        monkeypatch=monkeypatch,
    )
    scores = [json.loads((run / "metrics.json").read_text()) for run in (first, again)]
    assert {k: scores[0][k] for k in SCORES} == {k: scores[1][k] for k in SCORES}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A finished one-epoch run (constant lr) with its .hydra/config.yaml, as train.py leaves it."""
    run_dir = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main(
            f"data.root={data_root}",
            *TINY,
            "epochs=1",
            "model.lr_schedule=constant",
            f"hydra.run.dir={run_dir}",
            monkeypatch=monkeypatch,
        )
    return run_dir


@pytest.mark.parametrize(
    "changed",
    ["data.val_size=50", "model.momentum=0.5", "seed=1", "loss=mse", "+trainer.precision=64"],
)
def test_a_resume_that_changes_what_is_trained_is_refused(
    make_cfg: Callable[..., DictConfig], finished_run: Path, changed: str
) -> None:
    last = finished_run / "checkpoints" / "last.ckpt"
    cfg = make_cfg("epochs=1", "model.lr_schedule=constant", f"ckpt_path={last}", changed)
    key = changed.lstrip("+").split("=")[0]
    with pytest.raises(UsageError, match=f"trained with {key}=.*but this run says {key}="):
        resumed_run_dir(cfg)


@pytest.mark.parametrize(
    "changed", ["data.eval_batch_size=50", "log_every=1", "trainer.accelerator=cpu"]
)
def test_a_resume_may_change_how_it_runs(
    make_cfg: Callable[..., DictConfig], finished_run: Path, changed: str
) -> None:
    last = finished_run / "checkpoints" / "last.ckpt"
    cfg = make_cfg("epochs=1", "model.lr_schedule=constant", f"ckpt_path={last}", changed)
    assert resumed_run_dir(cfg) == finished_run


def test_extending_a_cosine_run_is_refused_with_how_to_extend(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("epochs=1"), tmp_path)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(make_cfg("epochs=1"), tmp_path / ".hydra" / "config.yaml")
    cfg = make_cfg("epochs=2", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")
    with pytest.raises(UsageError, match="planned over epochs=1.*model.lr_schedule=constant"):
        resumed_run_dir(cfg)


def test_a_constant_lr_run_extended_ends_as_a_straight_run_would(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    constant = ["model.lr_schedule=constant", "log_every=1"]
    straight = fit_and_test(make_cfg("epochs=3", *constant), tmp_path / "straight")
    short = tmp_path / "short"
    fit_and_test(make_cfg("epochs=2", *constant), short)
    (short / ".hydra").mkdir()
    OmegaConf.save(make_cfg("epochs=2", *constant), short / ".hydra" / "config.yaml")
    cfg = make_cfg("epochs=3", *constant, f"ckpt_path={short / 'checkpoints' / 'last.ckpt'}")
    extended = fit_and_test(cfg, resumed_run_dir(cfg))
    assert extended["epochs_run"] == 3
    assert {k: extended[k] for k in SCORES} == {k: straight[k] for k in SCORES}
    # TensorBoard's HParams tab shows the extended run's settings, once, and how it ended.
    (declared,) = short.glob("*.hparams")
    start = EventAccumulator(str(declared)).Reload().SummaryMetadata("_hparams_/session_start_info")
    settings = plugin_data_pb2.HParamsPluginData.FromString(start.plugin_data.content)
    assert settings.session_start_info.hparams["epochs"].number_value == 3
    assert len(list(short.glob("*.hparams_end"))) == 1


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("+trainer.enable_progress_bar=false", "settings: Trainer was configured with"),
        pytest.param(  # the sentence names the accelerators this machine has
            "trainer.accelerator=gpu",
            "(this machine has: cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_trainer_settings_lightning_refuses_end_in_one_sentence_before_the_data(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    setting: str,
    said: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main(
            f"data.root={tmp_path / 'nowhere'}",  # not read: the trainer is refused first
            setting,
            f"hydra.run.dir={tmp_path / 'run'}",
            monkeypatch=monkeypatch,
        )
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "lightning.Trainer refused the trainer.* settings: " in err and said in err
    assert "Traceback" not in err and "files are missing" not in err


class InterruptTest(Callback):
    def on_test_batch_start(self, trainer: Trainer, *args) -> None:
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_scoring_the_best_checkpoint_keeps_the_run(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signal_handlers: None,
) -> None:
    build = wiring.build

    def build_with_interrupt(cfg: DictConfig, run_dir: Path):
        datamodule, model, trainer = build(cfg, run_dir)
        trainer.callbacks.append(InterruptTest())
        return datamodule, model, trainer

    monkeypatch.setattr(wiring, "build", build_with_interrupt)
    with pytest.raises(Interrupted, match="while scoring the best checkpoint") as caught:
        fit_and_test(make_cfg(), tmp_path)
    assert caught.value.exit_code == 130
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epochs_run"] == 2
    assert (tmp_path / metrics["best_checkpoint"]).is_file()


def test_a_folder_another_run_is_writing_into_is_refused(
    data_root: Path, finished_run: Path, tmp_path: Path
) -> None:
    busy = tmp_path / "busy"
    folder_lock.claim(busy, "hydra.run.dir")  # this process stands for a run still going
    try:
        second = run_cli(f"data.root={data_root}", *TINY, f"hydra.run.dir={busy}", cwd=tmp_path)
        assert second.returncode == 1
        assert f"hydra.run.dir={busy} is in use by another run" in second.stderr
        assert [p.name for p in busy.iterdir()] == [".claimed"]  # nothing of the second run
        # Two resumes of one run: the second is refused the same way.
        folder_lock.claim(finished_run, "the run dir")
        last = finished_run / "checkpoints" / "last.ckpt"
        before = (finished_run / "metrics.json").read_text()
        again = run_cli(
            f"data.root={data_root}",
            *TINY,
            "epochs=1",
            "model.lr_schedule=constant",
            f"ckpt_path={last}",
            f"hydra.run.dir={tmp_path / 'again'}",
            cwd=tmp_path,
        )
        assert again.returncode == 1 and "is in use by another run" in again.stderr
        assert (finished_run / "metrics.json").read_text() == before
    finally:
        folder_lock.release(busy)
        folder_lock.release(finished_run)


def test_resuming_from_a_damaged_checkpoint_names_it_and_adds_nothing(
    make_cfg: Callable[..., DictConfig], finished_run: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "run" / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes((finished_run / "checkpoints" / "last.ckpt").read_bytes()[:3000])
    before = sorted(p.name for p in damaged.parent.parent.rglob("*"))
    with pytest.raises(UsageError, match=f"ckpt_path={damaged} is not a readable mnist-mlp"):
        fit_and_test(make_cfg("epochs=1", f"ckpt_path={damaged}"), damaged.parent.parent)
    assert sorted(p.name for p in damaged.parent.parent.rglob("*")) == before


def test_a_resumed_run_writes_only_into_its_own_run_dir(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    settings = (*TINY, f"data.root={data_root}", "model.lr_schedule=constant")
    run_main(*settings, "epochs=1", f"hydra.run.dir={run_dir}", monkeypatch=monkeypatch)
    saved_config = (run_dir / ".hydra" / "config.yaml").read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    run_main(*settings, "epochs=2", f"ckpt_path={last}", monkeypatch=monkeypatch)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # no outputs/
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 2
    assert "Resuming" in (run_dir / "train.log").read_text()  # the resume's log, appended
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved_config


def test_a_run_resumed_after_its_folder_moved_names_its_own_best_checkpoint(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """Resumed with nothing left to train (it was stopped while its best checkpoint was scored):
    the best checkpoint Lightning restores is the old folder's path."""
    first = tmp_path / "first"
    best = fit_and_test(make_cfg(), first)["best_checkpoint"]
    (first / ".hydra").mkdir()
    OmegaConf.save(make_cfg(), first / ".hydra" / "config.yaml")
    moved = first.rename(tmp_path / "moved")
    cfg = make_cfg(f"ckpt_path={moved / 'checkpoints' / 'last.ckpt'}")
    metrics = fit_and_test(cfg, resumed_run_dir(cfg))
    assert metrics["best_checkpoint"] == best and (moved / best).is_file()


def test_a_checkpoint_of_another_network_is_refused_before_anything_is_written(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    fit_and_test(make_cfg("epochs=1"), run)
    before = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
    last = run / "checkpoints" / "last.ckpt"
    cfg = make_cfg("epochs=1", "model.hidden_sizes=[16]", f"ckpt_path={last}")
    said = r"holds a network with model.hidden_sizes=\[32\], but this run says .*=\[16\]"
    with pytest.raises(UsageError, match=said):
        fit_and_test(cfg, run)
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == before


def test_a_resumed_csv_run_keeps_the_earlier_epochs_rows(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    settings = ["logger=csv", "model.lr_schedule=constant"]
    run = tmp_path / "run"
    fit_and_test(make_cfg("epochs=2", *settings), run)
    (run / ".hydra").mkdir()
    OmegaConf.save(make_cfg("epochs=2", *settings), run / ".hydra" / "config.yaml")
    cfg = make_cfg("epochs=3", *settings, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    fit_and_test(cfg, resumed_run_dir(cfg))
    with open(run / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    # val/acc once an epoch, at the SGD steps taken: 16 an epoch on the tiny data
    assert [row["step"] for row in rows if row.get("val/acc")] == ["16", "32", "48"]


def test_a_disk_that_fills_mid_run_ends_in_one_sentence_and_keeps_what_was_saved(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = wiring.build

    def build_on_a_filling_disk(cfg: DictConfig, run_dir: Path):
        datamodule, model, trainer = build(cfg, run_dir)
        save, saves = trainer.save_checkpoint, iter(range(100))

        def save_until_full(path, *args, **kwargs):
            if str(path).endswith("last.ckpt.partial") and next(saves) == 1:  # the 2nd epoch's
                Path(path).write_bytes(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return save(path, *args, **kwargs)

        monkeypatch.setattr(trainer, "save_checkpoint", save_until_full)
        return datamodule, model, trainer

    monkeypatch.setattr(wiring, "build", build_on_a_filling_disk)
    with pytest.raises(
        UsageError, match=r"\(No space left on device\); .*last.ckpt holds the last"
    ):
        fit_and_test(make_cfg("epochs=3"), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["epochs_run"] == 1
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0  # the first epoch's, whole
    assert not list((tmp_path / "checkpoints").glob("*.partial"))
