"""Epoch time of mnist-mlp beside a bare PyTorch loop and the textbook Lightning MNIST.

    python benchmarks/speed.py --data-root data [--dataset MNIST] [override ...]

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
from common import ROOT, parser_with_data, project_config
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, random_split
from torchvision import transforms

from mnist_mlp.run.build import build
from mnist_mlp.sweeps.rows import job_number
from mnist_mlp.training.data import epoch_order
from mnist_mlp.training.idx_files import DATASETS


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


def speed_config(args: argparse.Namespace, batch_size: int | None = None, *extra: str):
    sized = [f"batch_size={batch_size}"] if batch_size is not None else []
    return project_config(args, f"epochs={args.epochs}", *sized, *args.overrides, *extra)


class Lockstep(Callback):
    """A bare PyTorch loop, stepped through the same batches between the project's steps.

    Shared VMs can stall a process for tenths of a second, several times a second
    (benchmarks/stalls.py counts them). Timed a whole epoch apart, the two loops would be compared
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
        self.project: list[list[float]] = []  # per epoch, its training stretches in seconds
        self.bare: list[list[float]] = []
        # Per epoch, what follows its training: the bare loop's validation; the project's
        # validation loop, checkpoints, histograms and epoch-end hooks.
        self.bare_tail: list[float] = []
        self.project_tail: list[float] = []
        self.clock: float | None = None  # None outside a training epoch (the sanity check)
        self.tail_start: float | None = None

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.model.to(module.device)  # in place: the optimizer keeps its parameters

    def now(self) -> float:
        """The clock, once the device has finished the work queued so far (on a GPU)."""
        if self.images.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def close_tail(self) -> None:
        if self.tail_start is not None:
            self.project_tail.append(self.now() - self.tail_start)
            self.tail_start = None

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.close_tail()
        self.images, self.labels = trainer.datamodule.splits["train"]
        self.val_images, self.val_labels = trainer.datamodule.splits["val"]
        self.per_turn = trainer.datamodule.hparams.log_every
        self.batch_size = trainer.datamodule.hparams.batch_size
        self.epoch, self.batches = trainer.current_epoch, None
        self.project.append([])
        self.bare.append([])
        self.clock = self.now()

    def bare_turn(self, steps: int | None) -> None:
        """`steps` SGD steps of the bare loop (None: the rest of its epoch)."""
        start = self.now()
        self.project[-1].append(start - self.clock)
        if self.batches is None:  # a plain loop draws the same order the project does
            order = epoch_order(len(self.labels), self.seed, self.epoch).to(self.images.device)
            self.batches = iter(order.split(self.batch_size))
        with torch.enable_grad():  # hooks may run under Lightning's no-grad contexts
            for index in itertools.islice(self.batches, steps):
                loss = self.model.cost(self.model(self.images[index]), self.labels[index])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.clock = self.now()
        self.bare[-1].append(self.clock - start)

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, *args) -> None:
        self.bare_turn(self.per_turn)

    def bare_validation(self) -> None:
        """Loss and accuracy on the validation images, read on the host, as a script would."""
        start = self.now()
        with torch.no_grad():
            loss = correct = 0
            batches = zip(self.val_images.split(1000), self.val_labels.split(1000), strict=True)
            for images, labels in batches:
                logits = self.model(images)
                loss += self.model.cost(logits, labels) * len(labels)
                correct += (logits.argmax(1) == labels).sum()
            _ = (loss.item() / len(self.val_labels), correct.item() / len(self.val_labels))
        self.bare_tail.append(self.now() - start)

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self.clock is not None:
            self.bare_turn(None)
            self.bare_validation()
            self.clock = None
            self.tail_start = self.now()

    def on_train_end(self, trainer: Trainer, module: LightningModule) -> None:
        self.close_tail()


def time_project(args: argparse.Namespace, batch_size: int, workdir: Path) -> list[float]:
    """Wall seconds of each training epoch of the project's own fit, stalls and all."""
    datamodule, model, trainer = build(speed_config(args, batch_size), workdir)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=datamodule)
    return timer.seconds


def typical_epoch(epochs: list[list[float]]) -> float:
    """An epoch's seconds without the VM's stalls: the sum over its stretches of each stretch's
    median across epochs."""
    return sum(statistics.median(stretch) for stretch in zip(*epochs, strict=True))


def time_lockstep(args: argparse.Namespace, batch_size: int, workdir: Path, *extra: str) -> dict:
    """The project's own fit (the default config's progress bar, logging, checkpoints, pictures)
    with a bare loop in lockstep: per timed epoch, the training stretches and the time after
    training (validation and the rest), project's and bare's."""
    datamodule, model, trainer = build(speed_config(args, batch_size, *extra), workdir)
    lockstep = Lockstep(copy.deepcopy(model), datamodule.seed)  # same initial weights
    trainer.callbacks.append(lockstep)
    trainer.fit(model, datamodule=datamodule)
    return {  # each fit's first epoch is warm-up
        "project": lockstep.project[1:],
        "bare": lockstep.bare[1:],
        "project_tail": lockstep.project_tail[1:],
        "bare_tail": lockstep.bare_tail[1:],
    }


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
    _, model, _ = build(speed_config(args, batch_size), Path(tempfile.mkdtemp()))
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


def print_rows(args: argparse.Namespace, rows: list[dict], machine: str) -> None:
    print(f"\n{args.dataset} {' '.join(args.overrides)}: seconds per epoch ({machine})")
    print("train = the training stretches, without the VM's stalls; epoch = train plus the")
    print("median time after training (validation, checkpoints, histograms); wall = plain median")
    print(
        "| batch | bare train | mnist-mlp train | ratio | bare epoch | mnist-mlp epoch | ratio "
        "| ratio of wall epochs | textbook wall | textbook / mnist-mlp wall |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        textbook = f"{r['textbook_wall_s']:.2f}" if "textbook_wall_s" in r else "-"
        ratio = f"{r['textbook/project_wall']:.1f}x" if "textbook/project_wall" in r else "-"
        print(
            f"| {r['batch_size']} | {r['bare_train_s']:.3f} | {r['project_train_s']:.3f} "
            f"| {r['project/bare_train']:.2f}x | {r['bare_epoch_s']:.3f} "
            f"| {r['project_epoch_s']:.3f} | {r['project/bare_epoch']:.2f}x "
            f"| {r['project/bare_wall']:.2f}x | {textbook} | {ratio} |"
        )
    for r in rows if args.backprop else []:
        print(
            f"batch {r['batch_size']}: manual backprop {r['manual/autograd_train']:.2f}x autograd"
        )
    for r in rows if args.noise else []:
        print(
            f"batch {r['batch_size']}: training with the noise scale measured takes "
            f"{r['noise/no_noise_train']:.3f}x the time without (model.noise_scale=false)"
        )


def main() -> None:
    parser = parser_with_data(__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--epochs", type=int, default=6, help="per fit; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="fits per contender")
    parser.add_argument("--textbook-epochs", type=int, default=2, help="per textbook fit")
    parser.add_argument("--jobs", type=int, default=5, help="jobs in the multirun overhead check")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "speed.json")
    parser.add_argument("--backprop", action="store_true", help="also time model.backprop=manual")
    parser.add_argument(
        "--noise", action="store_true", help="also time model.noise_scale=false (its overhead)"
    )
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

    contenders = {"project": ()}  # the same fit with other settings, timed in turn
    if args.backprop:
        contenders["manual"] = ("model.backprop=manual",)
    if args.noise:
        contenders["no_noise"] = ("model.noise_scale=false",)
    rows = []
    for batch_size in args.batch_sizes:
        timed: dict[str, dict[str, list]] = {name: {} for name in contenders}
        textbook: list[float] = []
        for repeat in range(args.repeats):  # interleaved, so drifts hit all contenders alike
            for name, extra in contenders.items():
                times = time_lockstep(
                    args, batch_size, workdir / f"{name}-{batch_size}-{repeat}", *extra
                )
                for part, values in times.items():
                    timed[name].setdefault(part, []).extend(values)
            if batch_size in args.textbook_at:
                textbook += time_textbook(
                    args, batch_size, workdir / f"textbook-{batch_size}-{repeat}"
                )[1:]
        runs = timed["project"]
        train = {"project": typical_epoch(runs["project"]), "bare": typical_epoch(runs["bare"])}
        whole = {  # plus the median time after training, each side its own
            side: train[side] + statistics.median(runs[f"{side}_tail"]) for side in train
        }
        wall = {  # plain median whole epochs, stalls and all
            side: statistics.median(
                sum(stretches) + tail
                for stretches, tail in zip(runs[side], runs[f"{side}_tail"], strict=True)
            )
            for side in train
        }
        row = {
            "batch_size": batch_size,
            **{f"{side}_train_s": round(seconds, 3) for side, seconds in train.items()},
            "project/bare_train": round(train["project"] / train["bare"], 2),
            **{f"{side}_epoch_s": round(seconds, 3) for side, seconds in whole.items()},
            "project/bare_epoch": round(whole["project"] / whole["bare"], 2),
            **{f"{side}_wall_s": round(seconds, 3) for side, seconds in wall.items()},
            "project/bare_wall": round(wall["project"] / wall["bare"], 2),
            "epochs_timed": len(runs["project"]),
        }
        if textbook:
            row["textbook_wall_s"] = round(statistics.median(textbook), 3)
            row["textbook/project_wall"] = round(row["textbook_wall_s"] / wall["project"], 2)
        if args.backprop:
            manual = typical_epoch(timed["manual"]["project"])
            row["manual/autograd_train"] = round(manual / train["project"], 2)
        if args.noise:  # the noise scale's cost: the default fit against one without it
            no_noise = typical_epoch(timed["no_noise"]["project"])
            row["noise/no_noise_train"] = round(train["project"] / no_noise, 3)
        rows.append(row)

    if args.epochs_only:
        print_rows(args, rows, "")
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
    jobs = sorted((workdir / "sweep").glob("*/metrics.json"), key=lambda p: job_number(p.parent))
    job_seconds = [json.loads(path.read_text())["wall_seconds"] for path in jobs]
    default_batch = speed_config(args).batch_size
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
    print_rows(args, rows, result["machine"])
    print(f"multirun overhead per job after the first: {result['multirun_overhead_s_per_job']} s")
    print(f"peak resident memory of a default run: {result['peak_rss_mb_default_run']} MB")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
