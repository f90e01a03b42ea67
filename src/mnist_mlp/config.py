"""Every setting in one place: its name, type, default and allowed values, and the checks that
types cannot express (ranges, combinations).

The dataclasses are Hydra's structured config (registered as `train_schema`, the first entry of
conf/train.yaml's defaults), so Hydra itself refuses a value of the wrong type or a name outside
an Enum. This module imports no torch: `python train.py --help`, `--cfg job` and a bad setting
answer before the heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from mnist_mlp.errors import UsageError

# conf/ of the repository (the package is installed from it with pip install -e).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


class Choice(str, Enum):
    """A setting with named values, written as the name (on the command line, in files)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Loss(Choice):
    cross_entropy = "cross_entropy"  # on the logits (softmax inside the loss)
    mse = "mse"  # the notes' quadratic cost: softmax outputs against one-hot targets


class Activation(Choice):
    relu = "relu"
    sigmoid = "sigmoid"
    tanh = "tanh"


class LrSchedule(Choice):
    constant = "constant"  # the notes' plain SGD
    cosine = "cosine"  # lr falls from `lr` to 0 along half a cosine, stepped once per epoch


class Backprop(Choice):  # the backward pass: mnist_mlp/backprop.py, docs/backprop.md
    autograd = "autograd"
    manual = "manual"  # written out, the batch as matrices
    per_example = "per_example"  # written out as the notes say it: one example at a time (slow)


class Dataset(Choice):
    MNIST = "MNIST"
    FashionMNIST = "FashionMNIST"


# How a run is carried out rather than what it trains: left out of hyperparameters(), and free
# to differ when a run is resumed.
HOW = {"how": True}


@dataclass
class DataConfig:
    _target_: str = "mnist_mlp.data.MNISTDataModule"
    dataset: Dataset = Dataset.MNIST  # the torchvision dataset that parses <root>/<dataset>/raw/
    val_size: int = 5000  # held out of the 60k training images, seeded
    root: str = field(default="data", metadata=HOW)
    download: bool = field(default=True, metadata=HOW)  # only when the IDX files are missing
    # Validation and test batches: larger is faster and gives the same scores.
    eval_batch_size: int = field(default=1000, metadata=HOW)
    batch_size: int = II("batch_size")
    log_every: int = II("log_every")
    seed: int = II("seed")


@dataclass
class ModelConfig:
    _target_: str = "mnist_mlp.model.MLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256])
    activation: Activation = Activation.relu
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 penalty
    lr_schedule: LrSchedule = LrSchedule.cosine
    backprop: Backprop = Backprop.autograd
    # The gradient noise scale (mnist_mlp/noise.py), measured at the first SGD step of each
    # interval of log_every steps and logged with train/loss. It does not change what is trained.
    noise_scale: bool = field(default=True, metadata=HOW)
    loss: Loss = II("loss")
    lr: float = II("lr")
    batch_size: int = II("batch_size")


@dataclass
class PicturesConfig:
    _target_: str = "mnist_mlp.pictures.Pictures"
    hidden_units: int = field(default=16, metadata=HOW)  # first-layer weights drawn as images
    histograms: bool = field(default=True, metadata=HOW)  # weights and gradients, every epoch


@dataclass
class StudyConfig:  # steps to a target: mnist_mlp/study.py; train.py -m experiment=batch_size
    # The val/acc whose first reaching is recorded (step, examples, seconds); the run then stops.
    target: float | None = None  # null: no target
    # Training examples between the target's checks, at any batch size: experiment=batch_size's
    # log_every is this many examples' SGD steps.
    every_examples: int = 4096
    # experiment=batch_size's lr grid: lr = lr_factor x linear_scaling_lr(batch_size)
    lr_factor: float = 1.0


@dataclass
class TrainConfig:
    # What users sweep lives at the top level; the groups refer to it.
    batch_size: int = 64  # images per SGD step
    lr: float = 0.2  # the batch-size study's best at batch 64 (docs/batch-size.md)
    epochs: int = 6
    seed: int = 42  # initialisation, train/val split, shuffling
    # SGD steps per interval: one Lightning step each. At each interval's end the loss is checked
    # for divergence and train/loss logged; at its first step the noise scale is measured. The
    # weights do not depend on it; Lightning's own work per step is shared by its SGD steps.
    log_every: int = field(default=50, metadata=HOW)
    loss: Loss = Loss.cross_entropy
    ckpt_path: str | None = field(default=None, metadata=HOW)  # <run dir>/checkpoints/last.ckpt
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pictures: PicturesConfig = field(default_factory=PicturesConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    trainer: Any = MISSING  # lightning.Trainer's arguments (conf/trainer/)
    logger: Any = None  # a Lightning logger (conf/logger/)


@dataclass
class PredictConfig:
    ckpt: str = MISSING  # a checkpoint file, or a run dir (its best checkpoint by val/acc)
    images: str = MISSING  # an image file, or a folder of them


@dataclass
class EvaluateData:
    root: str | None = None  # where the run's data is now, when it has moved


@dataclass
class EvaluateConfig:
    ckpt: str = MISSING  # a checkpoint file, or a run dir (its best checkpoint by val/acc)
    data: EvaluateData = field(default_factory=EvaluateData)


for name, node in (
    ("train_schema", TrainConfig),
    ("predict_schema", PredictConfig),
    ("evaluate_schema", EvaluateConfig),
):
    ConfigStore.instance().store(name=name, node=node)

# experiment=batch_size's lr grid (study.lr_factor times this diagonal; docs/batch-size.md).
LR_AT_64, LR_CAP = 0.2, 0.4


def linear_scaling_lr(batch_size: int, factor: float) -> float:
    """`factor` times an lr that grows in proportion to the batch (the same step per example
    seen: linear scaling), LR_AT_64 at batch 64, and stops growing at LR_CAP, where plain SGD
    on this MLP starts to diverge whatever the batch."""
    return factor * min(LR_AT_64 * batch_size / 64, LR_CAP)


OmegaConf.register_new_resolver("linear_scaling_lr", linear_scaling_lr, replace=True)


def steps_for(examples: int, batch_size: int) -> int:
    """SGD steps that take about `examples` examples (at least one)."""
    return max(1, examples // batch_size)


OmegaConf.register_new_resolver("steps_for", steps_for, replace=True)

# A resumed run may run on other devices, or show its progress otherwise; anything else in
# trainer.* would change what is trained.
TRAINER_KEYS_FREE_ON_RESUME = ("accelerator", "devices", "enable_progress_bar")


def _leaves(schema: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """(dotted key, field) of every setting of the schema, nested groups flattened; the copies of
    top-level keys (model.lr is ${lr}) left out."""
    leaves = []
    for item in dataclasses.fields(schema):
        copy = isinstance(item.default, str) and item.default.startswith("${")
        if item.name == "_target_" or copy:
            continue
        nested = item.default_factory if dataclasses.is_dataclass(item.default_factory) else None
        if nested:
            leaves += _leaves(nested, f"{prefix}{item.name}.")
        elif item.type != "Any":
            leaves.append((f"{prefix}{item.name}", item))
    return leaves


SETTINGS = dict(_leaves(TrainConfig))  # what a user sets: "batch_size", "model.activation", ...


def plain(node: DictConfig) -> dict[str, Any]:
    """A config node as plain Python values (Enums as their names), interpolations resolved."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def plain_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def hyperparameters(cfg: DictConfig) -> dict[str, float | int | str | bool]:
    """What a run trains, as flat scalars (metrics.json, TensorBoard's HParams tab)."""
    values = {}
    for key, item in SETTINGS.items():
        if item.metadata.get("how"):
            continue
        value = OmegaConf.select(cfg, key)
        if value is None:  # not set (study.target outside a study)
            continue
        # Lists as text: TensorBoard's HParams takes only numbers, strings and booleans.
        values[key] = str(list(value)) if OmegaConf.is_list(value) else plain_value(value)
    return values


def resume_differences(saved: DictConfig, cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """(key, saved value, this run's value) for each setting a resume may not change."""
    differences = []
    for key, item in SETTINGS.items():
        if item.metadata.get("how") or key == "epochs":
            continue
        then, now = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if then != now:
            differences.append((key, plain_value(then), plain_value(now)))
    trainer_then, trainer_now = saved.get("trainer") or {}, cfg.get("trainer") or {}
    for key in sorted(set(trainer_then) | set(trainer_now)):
        if key in TRAINER_KEYS_FREE_ON_RESUME or key == "max_epochs":  # max_epochs is epochs
            continue
        then, now = trainer_then.get(key), trainer_now.get(key)
        if then != now:
            differences.append((f"trainer.{key}", then, now))
    return differences


# Config groups a run can do without. Hydra 1.3 refuses `group=null` on the command line (a
# ValueError traceback) and drops a group with `~group`; `null` is what users type.
OPTIONAL_GROUPS = ("logger", "experiment", "debug", "hparams_search")


def dropped_groups(argv: list[str]) -> list[str]:
    """The command line with each `<optional group>=null` written as Hydra's `~<group>`."""
    return [
        f"~{arg.removesuffix('=null')}" if arg.removesuffix("=null") in OPTIONAL_GROUPS else arg
        for arg in argv
    ]


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps the state a resume starts from (mnist_mlp.checkpoint writes it)."""
    return run_dir / "checkpoints" / "last.ckpt"


def resume_in_place(argv: list[str]) -> list[str]:
    """The command line of a run resumed from <run dir>/checkpoints/last.ckpt, made to continue
    in that run dir: Hydra then logs into its train.log and creates no new folder, nor a new
    .hydra/ (the run's own config stays, for the next resume's comparison)."""
    if "-m" in argv or "--multirun" in argv or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("ckpt_path=")]
    run_dir = Path(given[-1]).resolve().parent.parent if given else None
    if run_dir is None or not (run_dir / ".hydra" / "config.yaml").is_file():
        return argv  # run.py says what is wrong with ckpt_path
    return [*argv, f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null"]


def require_given(cfg: DictConfig, usage: str) -> None:
    """Refuse a config whose mandatory keys (???) were not given, with the command's usage."""
    missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise UsageError(f"Give {' and '.join(f'{key}=...' for key in missing)}; usage: {usage}")


def _require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise UsageError(f"{key}={value!r} is not allowed: {allowed}.")


def _positive(key: str, value: int) -> None:
    _require(key, value, value > 0, "use a positive whole number")


# Lightning options with no meaning here.
REFUSED_TRAINER_KEYS = {
    "log_every_n_steps": "train/loss is logged every log_every SGD steps; set that",
    "accumulate_grad_batches": "each mini-batch takes its own SGD step; raise batch_size instead",
}


def check_config(cfg: DictConfig) -> None:
    """Raise UsageError for the first setting a run could not use (types Hydra has checked)."""
    model = cfg.model
    for key in (
        "batch_size",
        "epochs",
        "data.val_size",
        "data.eval_batch_size",
        "log_every",
        "study.every_examples",
    ):
        _positive(key, OmegaConf.select(cfg, key))
    _require("lr", cfg.lr, math.isfinite(cfg.lr) and cfg.lr > 0, "use a number > 0")
    target = cfg.study.target
    _require("study.target", target, target is None or 0 < target <= 1, "use 0 < target <= 1")
    _require("seed", cfg.seed, 0 <= cfg.seed < 2**32, "use 0 <= seed < 2**32")
    hidden = list(model.hidden_sizes)
    _require(
        "model.hidden_sizes",
        hidden,
        all(n > 0 for n in hidden),
        "use a list of positive whole numbers, e.g. model.hidden_sizes=[512,256]",
    )
    for key in ("model.momentum", "model.weight_decay"):
        value = OmegaConf.select(cfg, key)
        _require(key, value, math.isfinite(value) and value >= 0, "use a number >= 0")
    if model.nesterov:
        _require("model.nesterov", True, model.momentum > 0, "it needs model.momentum > 0")
    trainer = cfg.trainer
    for key, why in REFUSED_TRAINER_KEYS.items():
        if key in trainer:
            _require(f"trainer.{key}", trainer[key], False, f"remove it: {why}")
    if model.backprop != Backprop.autograd:
        strategy = str(trainer.get("strategy", "auto"))
        _require(
            "model.backprop",
            model.backprop.value,
            "ddp" not in strategy,
            f"with trainer.strategy={strategy} the gradients must come from autograd, whose "
            "hooks average them across processes; use model.backprop=autograd",
        )
