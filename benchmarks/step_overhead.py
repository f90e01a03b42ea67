"""Where the time around an SGD step goes, measured inside a real fit of the project.

    python benchmarks/step_overhead.py --data-root data [--dataset MNIST] [override ...]

At the fit's first training step, with Lightning's loop, callbacks and logger in place, the same
SGD steps on the same real mini-batches are timed several ways, in turns (median of the turns,
the ways taken in reverse order every other turn):

- bare: forward, loss, backward and torch's own `optimizer.step()`;
- the same through Lightning's optimizer wrapper (`self.optimizers().step()`), which calls every
  callback's and the module's `on_before_optimizer_step`: what the project pays once an interval;
- the project's `training_step` with the noise scale off (its loop, and what it keeps per step);
- the project's `training_step` as configured (the noise scale once an interval);
- and the mini-batch gathers alone: by indexing, as the bare ways above do, and by index_select,
  as the project's mini-batches do.

The fit then trains its one epoch, and the time Lightning spent outside `training_step` in it
(its loop, data fetching, progress bar and the callbacks' batch hooks) is divided by the
epoch's SGD steps. Prints microseconds per SGD step.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import parser_with_data, project_config
from lightning import Callback, LightningModule, Trainer

from mnist_mlp.run.build import build
from mnist_mlp.training.data import Interval

STEPS, TURNS = 320, 9


def select_rows(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return tensor.index_select(0, index)


class OutsideSteps(Callback):
    """Seconds of each training epoch spent outside training_step."""

    def __init__(self) -> None:
        self.inside = self.start = 0.0
        self.outside: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.inside, self.start = 0.0, time.perf_counter()

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self.start:  # not the sanity check
            self.outside.append(time.perf_counter() - self.start - self.inside)
            self.start = 0.0


def main() -> None:
    parser = parser_with_data(__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. batch_size=256")
    args = parser.parse_args()
    cfg = project_config(args, "epochs=1", *args.overrides)
    datamodule, model, trainer = build(cfg, Path(tempfile.mkdtemp(prefix="mnist-mlp-overhead-")))
    outside = OutsideSteps()
    trainer.callbacks.append(outside)
    training_step = model.training_step
    timings: dict[str, list[float]] = {}

    def timed(batch, batch_idx: int):
        start = time.perf_counter()
        if not timings:  # the fit's first step; counted as inside training_step
            time_the_ways()
        result = training_step(batch, batch_idx)
        outside.inside += time.perf_counter() - start
        return result

    def time_the_ways() -> None:
        batch_size, per_step = cfg.batch_size, cfg.log_every
        optimizer = model.optimizers()
        images, labels = datamodule.splits["train"]
        order = torch.randperm(len(labels))[: batch_size * STEPS]
        steps = len(order.split(batch_size))

        def bare(step) -> float:
            start = time.perf_counter()
            for index in order.split(batch_size):
                loss = model.cost(model(images[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                step()
            return time.perf_counter() - start

        def project(noise_scale: bool) -> float:
            configured, model.hparams.noise_scale = model.hparams.noise_scale, noise_scale
            start = time.perf_counter()
            for index in order.split(batch_size * per_step):
                training_step(Interval(images, labels, index, lambda: batch_size), 1)
            model.hparams.noise_scale = configured
            return time.perf_counter() - start

        def gather(select) -> float:
            start = time.perf_counter()
            for index in order.split(batch_size):
                select(images, index), select(labels, index)
            return time.perf_counter() - start

        ways = {
            "bare (torch's optimizer.step())": lambda: bare(optimizer.optimizer.step),
            "Lightning's optimizer wrapper": lambda: bare(optimizer.step),
            "project's training_step, noise scale off": lambda: project(False),
            "project's training_step as configured": lambda: project(model.hparams.noise_scale),
            "gather by indexing (the bare ways')": lambda: gather(torch.Tensor.__getitem__),
            "gather by index_select (the project's)": lambda: gather(select_rows),
        }
        timings.update({name: [] for name in ways})  # printed in this order
        for turn in range(TURNS):
            for name, way in list(ways.items())[:: 1 if turn % 2 else -1]:
                timings[name].append(way() / steps * 1e6)

    model.training_step = timed
    trainer.fit(model, datamodule=datamodule)
    print(f"{' '.join(args.overrides) or 'default'}: us per SGD step ({cfg.batch_size} examples)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {TURNS}")
    for name, values in timings.items():
        print(f"{name + ':':52s} {statistics.median(values):8.1f}")
    sgd_steps = trainer.train_dataloader.mini_batches  # of the epoch, the timed ways left out
    print(f"{'Lightning, outside training_step:':52s} {outside.outside[0] / sgd_steps * 1e6:8.1f}")


if __name__ == "__main__":
    main()
