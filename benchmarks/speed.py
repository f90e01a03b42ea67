"""Epoch time of mnist-mlp beside a bare PyTorch loop and the textbook Lightning MNIST.

    python benchmarks/speed.py --data-root data --dataset FashionMNIST [override ...]

Overrides (Hydra syntax, e.g. model.hidden_sizes=[30] for the seed's 784-30-10 network) apply to
every contender, so they always train the same model on the same batches.

All three train the project's default MLP on the same real data (<data-root>/<dataset>/raw/) in
one process; the bare loop runs in lockstep inside the project's fit (see Lockstep), so that ratio
is measured side by side, step group by step group. Also measured: the per-job
overhead of a multirun and the peak resident memory of a default run (each in a fresh process).
Prints a table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, random_split
from torchvision import transforms

from mnist_mlp.data import DATASETS, EpochPermutation
from mnist_mlp.train import build

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer(Callback):
    """Seconds from the start of each training epoch to its last batch (validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.start: float | None = None  # None outside a training epoch (the sanity check)

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self.start is not None:
            self.seconds.append(time.perf_counter() - self.start)
            self.start = None


def project_config(args: argparse.Namespace, batch_size: int | None = None, *extra: str):
    overrides = [
        f"data.root={args.data_root}",
        f"data.dataset={args.dataset}",
        f"epochs={args.epochs}",
    ]
    if batch_size is not None:
        overrides.append(f"batch_size={batch_size}")
    overrides += [*args.overrides, *extra]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("train", overrides=overrides)


class Lockstep(Callback):
    """A bare PyTorch loop, stepped through the same batches between the project's steps.

    The shared VMs this was written on stall a process for 0.1-0.7 s several times a second
    (benchmarks/stalls.py shows it). Timed a whole epoch apart, the two loops would be compared
    through whichever caught more stalls. Here they take turns every Lightning step (after each
    project step, the bare loop takes as many SGD steps on its own copy of the model), and each
    epoch is timed in stretches: the project's from the end of one bare turn to the start of the
    next (Lightning's loop, hooks, progress bar, logging and the training step), the bare loop's
    over its turn. Stretch k of every epoch does the same work, so its median across epochs
    leaves the stalls out (`typical_epoch`). On a GPU each stretch ends once the device has
    finished its queued work, so each side is charged for its own kernels.
    """

    def __init__(self, model: LightningModule, seed: int) -> None:
        self.model, self.seed = model, seed
        self.optimizer = torch.optim.SGD(model.parameters(), lr=model.hparams.lr)
        self.project: list[list[float]] = []  # per epoch, its stretches in seconds
        self.bare: list[list[float]] = []
        self.clock: float | None = None  # None outside a training epoch (the sanity check)

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.model.to(module.device)  # in place: the optimizer keeps its parameters

    def now(self) -> float:
        """The clock, once the device has finished the work queued so far (on a GPU)."""
        if self.images.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.images, self.labels = trainer.datamodule.splits["train"]
        self.per_turn = trainer.datamodule.batches_per_step
        self.epoch, self.batches = trainer.current_epoch, None
        self.project.append([])
        self.bare.append([])
        self.clock = self.now()

    def bare_turn(self, steps: int | None) -> None:
        """`steps` SGD steps of the bare loop (None: the rest of its epoch)."""
        start = self.now()
        self.project[-1].append(start - self.clock)
        if self.batches is None:  # a plain loop draws the same order the project does
            sampler = EpochPermutation(len(self.labels), self.seed)
            sampler.set_epoch(self.epoch)
            order = sampler.order().to(self.images.device)
            self.batches = iter(order.split(self.model.hparams.batch_size))
        with torch.enable_grad():  # hooks may run under Lightning's no-grad contexts
            for index in itertools.islice(self.batches, steps):
                loss = self.model.loss_fn(self.model(self.images[index]), self.labels[index])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.clock = self.now()
        self.bare[-1].append(self.clock - start)

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, *args) -> None:
        self.bare_turn(self.per_turn)

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self.clock is not None:
            self.bare_turn(None)
            self.clock = None


def time_project(args: argparse.Namespace, batch_size: int, workdir: Path) -> list[float]:
    """Wall seconds of each training epoch of the project's own fit, stalls and all."""
    datamodule, model, trainer = build(project_config(args, batch_size), workdir)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=datamodule)
    return timer.seconds


def typical_epoch(epochs: list[list[float]]) -> float:
    """An epoch's seconds without the VM's stalls: the sum over its stretches of each stretch's
    median across epochs."""
    return sum(statistics.median(stretch) for stretch in zip(*epochs, strict=True))


def time_lockstep(
    args: argparse.Namespace, batch_size: int, workdir: Path, *extra: str
) -> tuple[list[list[float]], list[list[float]]]:
    """The project's own fit (the default config's progress bar, logging, checkpoints, pictures)
    with a bare loop in lockstep: the stretches of each timed epoch, project's and bare's."""
    datamodule, model, trainer = build(project_config(args, batch_size, *extra), workdir)
    lockstep = Lockstep(copy.deepcopy(model), datamodule.seed)  # same initial weights
    trainer.callbacks.append(lockstep)
    trainer.fit(model, datamodule=datamodule)
    return lockstep.project[1:], lockstep.bare[1:]  # each fit's first epoch is warm-up


class TextbookMLP(LightningModule):
    """Lightning's MNIST example, as tutorials write it: per-step logging, DataLoader batches."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = torch.nn.functional.cross_entropy(self.model(images), labels)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(images)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, labels), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def time_textbook(args: argparse.Namespace, batch_size: int, workdir: Path) -> list[float]:
    _, model, _ = build(project_config(args, batch_size), Path(tempfile.mkdtemp()))
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    full = DATASETS[args.dataset](str(args.data_root), train=True, transform=to_tensor)
    generator = torch.Generator().manual_seed(0)
    train_set, val_set = random_split(full, [len(full) - 5000, 5000], generator=generator)
    timer = EpochTimer()
    trainer = Trainer(
        max_epochs=args.textbook_epochs,
        logger=TensorBoardLogger(str(workdir)),
        callbacks=[timer],
        enable_checkpointing=False,
    )
    trainer.fit(
        TextbookMLP(model, model.hparams.lr),
        DataLoader(train_set, batch_size=batch_size, shuffle=True),
        DataLoader(val_set, batch_size=batch_size),
    )
    return timer.seconds


def run_train_py(*overrides: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT / "data")
    parser.add_argument("--dataset", choices=list(DATASETS), default="FashionMNIST")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--epochs", type=int, default=6, help="per fit; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="fits per contender")
    parser.add_argument("--textbook-epochs", type=int, default=2, help="per textbook fit")
    parser.add_argument("--jobs", type=int, default=5, help="jobs in the multirun overhead check")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "speed.json")
    parser.add_argument("--backprop", action="store_true", help="also time model.backprop=manual")
    parser.add_argument(
        "--textbook-at",
        type=int,
        nargs="*",
        default=[32],
        help="batch sizes at which the (slow) textbook contender runs",
    )
    parser.add_argument(
        "--epochs-only", action="store_true", help="print the epoch times; no memory, multirun"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every contender")
    args = parser.parse_args()
    args.data_root = args.data_root.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="mnist-mlp-bench-"))

    rows = []
    for batch_size in args.batch_sizes:
        stretches: dict[str, list[list[float]]] = {"project": [], "bare": [], "manual": []}
        textbook: list[float] = []
        for repeat in range(args.repeats):  # interleaved, so drifts hit all contenders alike
            project, bare = time_lockstep(
                args, batch_size, workdir / f"project-{batch_size}-{repeat}"
            )
            stretches["project"] += project
            stretches["bare"] += bare
            if args.backprop:
                manual, bare = time_lockstep(
                    args,
                    batch_size,
                    workdir / f"manual-{batch_size}-{repeat}",
                    "model.backprop=manual",
                )
                stretches["manual"] += manual
                stretches["bare"] += bare
            if batch_size in args.textbook_at:
                textbook += time_textbook(
                    args, batch_size, workdir / f"textbook-{batch_size}-{repeat}"
                )[1:]
        typical = {name: typical_epoch(epochs) for name, epochs in stretches.items() if epochs}
        wall = {
            name: statistics.median(map(sum, epochs))
            for name, epochs in stretches.items()
            if epochs
        }
        row = {
            "batch_size": batch_size,
            **{f"{name}_s": round(seconds, 3) for name, seconds in typical.items()},
            "project/bare": round(typical["project"] / typical["bare"], 2),
            **{f"{name}_wall_s": round(seconds, 3) for name, seconds in wall.items()},
            "project/bare_wall": round(wall["project"] / wall["bare"], 2),
            "epochs_timed": len(stretches["project"]),
        }
        if textbook:
            row["textbook_wall_s"] = round(statistics.median(textbook), 3)
            row["textbook/project_wall"] = round(row["textbook_wall_s"] / wall["project"], 2)
        if args.backprop:
            row["manual/autograd"] = round(typical["manual"] / typical["project"], 2)
        rows.append(row)

    if args.epochs_only:
        print(json.dumps(rows, indent=2))
        return
    data = [f"data.root={args.data_root}", f"data.dataset={args.dataset}"]
    # Peak memory first: getrusage reports the largest child so far.
    run_train_py(*data, "epochs=1", f"hydra.run.dir={workdir}/peak")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    # Per-job overhead: a job's wall time (metrics.json) less one epoch of training at the
    # default batch size, timed here the same way as above; validation counts as overhead.
    # An lr sweep, as users run them: the jobs share the data, which stays loaded between jobs.
    rates = ",".join(f"{0.05 * (job + 1):g}" for job in range(args.jobs))
    run_train_py(
        "-m",
        *data,
        *args.overrides,
        "epochs=1",
        f"lr={rates}",
        f"hydra.sweep.dir={workdir}/sweep",
    )
    jobs = sorted((workdir / "sweep").glob("*/metrics.json"), key=lambda p: int(p.parent.name))
    job_seconds = [json.loads(path.read_text())["wall_seconds"] for path in jobs]
    default_batch = project_config(args).batch_size
    epoch_s = statistics.median(time_project(args, default_batch, workdir / "default")[1:])
    per_job_overhead = statistics.median(job_seconds[1:]) - epoch_s

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}",
        "dataset": args.dataset,
        "overrides": args.overrides,
        "epoch_seconds": rows,
        "multirun_overhead_s_per_job": round(per_job_overhead, 2),
        "peak_rss_mb_default_run": round(peak_kb / 1024),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.dataset} {' '.join(args.overrides)}, seconds per training epoch")
    print(f"({result['machine']}; typical = without the VM's stalls, wall = median epoch)")
    print(
        "| batch | bare loop | mnist-mlp | mnist-mlp / bare | bare wall | mnist-mlp wall "
        "| mnist-mlp / bare wall | textbook wall | textbook / mnist-mlp wall |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        textbook = f"{r['textbook_wall_s']:.2f}" if "textbook_wall_s" in r else "-"
        ratio = f"{r['textbook/project_wall']:.1f}x" if "textbook/project_wall" in r else "-"
        print(
            f"| {r['batch_size']} | {r['bare_s']:.2f} | {r['project_s']:.2f} "
            f"| {r['project/bare']:.2f}x | {r['bare_wall_s']:.2f} | {r['project_wall_s']:.2f} "
            f"| {r['project/bare_wall']:.2f}x | {textbook} | {ratio} |"
        )
    for r in rows if args.backprop else []:
        print(
            f"batch {r['batch_size']}: manual backprop {r['manual_s']:.2f} s/epoch, "
            f"{r['manual/autograd']:.2f}x autograd"
        )
    print(f"multirun overhead per job after the first: {result['multirun_overhead_s_per_job']} s")
    print(f"peak resident memory of a default run: {result['peak_rss_mb_default_run']} MB")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
