"""Test loss, accuracy and per-class accuracy of a saved checkpoint, and its confusion matrix.

    python -m mnist_mlp.inspection.evaluate ckpt=<checkpoint or run dir> [data.root=<folder>]

The test data is the one the checkpoint was trained on (every checkpoint carries its data
settings, so it may lie anywhere), unless data.root says where it is now; Lightning's test loop
scores it (inspection/scores.py). torch and Lightning are imported only once the command line is
whole.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnist_mlp.config.schema import CONF_DIR
from mnist_mlp.inspection.predict import as_command

USAGE = "python -m mnist_mlp.inspection.evaluate ckpt=<checkpoint or run dir> [data.root=<folder>]"


def print_scores(cfg: DictConfig) -> None:
    from mnist_mlp.inspection.scores import print_scores

    print_scores(cfg)


main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")(
    as_command(print_scores, USAGE)
)

if __name__ == "__main__":
    main()
