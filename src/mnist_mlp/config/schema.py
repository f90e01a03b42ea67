"""Every setting in one place: its name, type, default and allowed values.

The dataclasses are Hydra's structured config (registered as `train_schema`, the first entry of
conf/train.yaml's defaults), so Hydra itself refuses a value of the wrong type or a name outside
an Enum. Nothing here imports torch: `python train.py --help`, `--cfg job` and a bad setting
answer before the heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, OmegaConf

# conf/ of the repository (the package is installed from it with pip install -e).
CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")


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


class Backprop(Choice):  # the backward pass: mnist_mlp/training/backprop.py, docs/backprop.md
    autograd = "autograd"
    manual = "manual"  # written out, the batch as matrices
    per_example = "per_example"  # written out as the notes say it: one example at a time (slow)


class Outputs(Choice):  # the output neurons' activations a^L, from the logits z^L
    softmax = "softmax"  # a distribution over the classes; cross_entropy is on it
    sigmoid = "sigmoid"  # each class on its own, as Nielsen's network.py (loss=mse only)


class Init(Choice):  # the weights' and biases' first values
    torch = "torch"  # nn.Linear's: uniform within +-1/sqrt(inputs of the layer)
    normal = "normal"  # N(0, 1), as Nielsen's network.py


class Inputs(Choice):  # what the network sees of a pixel (0-255)
    normalised = "normalised"  # (pixel/255 - mean) / std, with the training split's statistics
    unit = "unit"  # pixel/255, in [0, 1], as Nielsen's network.py


class ValSplit(Choice):  # which training images are held out for validation
    random = "random"  # a seeded random choice of val_size
    last = "last"  # the file's last val_size images, as Nielsen's mnist_loader


class Dataset(Choice):
    MNIST = "MNIST"
    FashionMNIST = "FashionMNIST"


# How a run is carried out rather than what it trains: left out of hyperparameters(), and free
# to differ when a run is resumed.
HOW = {"how": True}


@dataclass
class DataConfig:
    _target_: str = "mnist_mlp.training.data.MNISTDataModule"
    dataset: Dataset = Dataset.MNIST  # the torchvision dataset that parses <root>/<dataset>/raw/
    val_size: int = 5000  # held out of the 60k training images (val_split says which)
    val_split: ValSplit = ValSplit.random
    inputs: Inputs = Inputs.normalised
    root: str = field(default="data", metadata=HOW)
    download: bool = field(default=True, metadata=HOW)  # only when the IDX files are missing
    # Validation and test batches: larger is faster and gives the same scores.
    eval_batch_size: int = field(default=1000, metadata=HOW)
    # The batch-size study's target for these data (experiment=batch_size): a val/acc that every
    # batch size of the study reaches within its budget and none at its first check.
    study_target: float = field(default=0.97, metadata=HOW)
    batch_size: Any = II("batch_size")
    log_every: int = II("log_every")
    auto_batch: Any = II("auto_batch")
    seed: int = II("seed")


@dataclass
class ModelConfig:
    _target_: str = "mnist_mlp.training.model.MLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256])
    activation: Activation = Activation.relu  # of the hidden neurons
    outputs: Outputs = Outputs.softmax
    init: Init = Init.torch
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0  # L2 penalty
    lr_schedule: LrSchedule = LrSchedule.cosine
    backprop: Backprop = Backprop.autograd
    # The gradient noise scale (measure/noise_scale.py), measured at the first SGD step of each
    # interval of log_every steps and logged with train/loss. It does not change what is trained.
    noise_scale: bool = field(default=True, metadata=HOW)
    loss: Loss = II("loss")
    lr: float = II("lr")


@dataclass
class PicturesConfig:
    _target_: str = "mnist_mlp.inspection.pictures.Pictures"
    hidden_units: int = field(default=16, metadata=HOW)  # first-layer weights drawn as images
    histograms: bool = field(default=True, metadata=HOW)  # weights and gradients, every epoch


@dataclass
class StudyConfig:  # steps to a target (measure/steps_to_target.py): experiment=batch_size
    # The val/acc whose first reaching is recorded (step, examples, seconds); the run then stops.
    target: float | None = None  # null: no target
    # Training examples between the target's checks, at any batch size: experiment=batch_size's
    # log_every is this many examples' SGD steps.
    every_examples: int = 4096
    # experiment=batch_size's lr grid: lr = lr_factor x linear_scaling_lr(batch_size)
    lr_factor: float = 1.0


# batch_size=auto: the batch size chosen as training goes (training/auto_batch.py).
AUTO = "auto"


@dataclass
class AutoBatchConfig:  # read only with batch_size=auto (training/auto_batch.py)
    smallest: int = 16  # the first batch size, and the least (a power of two)
    largest: int = 256  # a power of two, near the study's B_crit on MNIST (docs/batch-size.md)
    # Training examples per interval, a multiple of `largest`: the noise scale is measured at each
    # interval's first step and the next interval's batch size chosen from it (at most 2x apart).
    every_examples: int = 1024


@dataclass
class TrainConfig:
    # What users sweep lives at the top level; the groups refer to it.
    # Images per SGD step, or auto: each interval's from the measured noise scale (auto_batch).
    batch_size: Any = 64
    lr: float = 0.2  # the batch-size study's best at batch 64 (docs/batch-size.md)
    epochs: int = 6
    seed: int = 42  # initialisation, train/val split, shuffling
    # SGD steps per interval: one Lightning step each. At each interval's end the loss is checked
    # for divergence and train/loss logged; at its first step the noise scale is measured. The
    # weights do not depend on it; Lightning's own work per step is shared by its SGD steps.
    # (With batch_size=auto an interval is auto_batch.every_examples examples instead.)
    log_every: int = field(default=50, metadata=HOW)
    loss: Loss = Loss.cross_entropy
    ckpt_path: str | None = field(default=None, metadata=HOW)  # <run dir>/checkpoints/last.ckpt
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pictures: PicturesConfig = field(default_factory=PicturesConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    auto_batch: AutoBatchConfig = field(default_factory=AutoBatchConfig)
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


def linear_scaling_lr(batch_size: int | str, factor: float) -> float:
    """`factor` times an lr that grows in proportion to the batch (the same step per example
    seen: linear scaling), LR_AT_64 at batch 64, and stops growing at LR_CAP, where plain SGD
    on this MLP starts to diverge whatever the batch. For batch_size=auto, the lr at batch 64:
    training/auto_batch.py moves it along this rule with the batch it chooses."""
    size = 64 if batch_size == AUTO else batch_size
    return factor * min(LR_AT_64 * size / 64, LR_CAP)


OmegaConf.register_new_resolver("linear_scaling_lr", linear_scaling_lr, replace=True)


def steps_for(examples: int, batch_size: int | str) -> int:
    """SGD steps that take about `examples` examples (at least one); 1 for batch_size=auto,
    whose intervals are auto_batch.every_examples examples whatever the batch."""
    return 1 if batch_size == AUTO else max(1, examples // batch_size)


OmegaConf.register_new_resolver("steps_for", steps_for, replace=True)
