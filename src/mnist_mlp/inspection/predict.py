"""The class of each image file, by a trained checkpoint.

    python -m mnist_mlp.inspection.predict ckpt=<checkpoint or run dir> images=<file or folder>

Any size, grayscale or colour, dark-on-light or light-on-dark, transparent or not: each image is
prepared as the checkpoint's data set's images were (inspection/images.py), normalised as the
training data was, and classified (inspection/classify.py). torch and Lightning are imported only
once the command line is whole, so a usage error answers at once.
"""

from __future__ import annotations

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from mnist_mlp.config.checks import require_given
from mnist_mlp.config.schema import CONF_DIR
from mnist_mlp.errors import UsageError

USAGE = (
    "python -m mnist_mlp.inspection.predict ckpt=<checkpoint or run dir> images=<file or folder>"
)


def as_command(
    task: Callable[[DictConfig], int | None], usage: str
) -> Callable[[DictConfig], None]:
    """A Hydra task that exits with the task's code, or with one sentence on bad input."""

    def command(cfg: DictConfig) -> None:
        try:
            require_given(cfg, usage)
            code = task(cfg)
        except UsageError as error:
            raise SystemExit(str(error)) from None
        if code:
            raise SystemExit(code)

    return command


def predict_files(cfg: DictConfig) -> int:
    from mnist_mlp.inspection.classify import predict_files

    return predict_files(cfg)


main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")(
    as_command(predict_files, USAGE)
)

if __name__ == "__main__":
    main()
