"""Entry point: `python train.py [key=value ...]`, `python train.py -m key=a,b ...` for sweeps."""

import sys

import hydra
from omegaconf import DictConfig

# Importing mnist_mlp.config registers conf/'s train_schema.
from mnist_mlp.config.command_line import dropped_groups, resume_in_place


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from mnist_mlp.run.task import run  # torch and Lightning come in once the settings are checked

    return run(cfg)


if __name__ == "__main__":
    sys.argv = dropped_groups(sys.argv)  # logger=null: no logger
    sys.argv = resume_in_place(sys.argv)  # a resumed run writes only into its own run dir
    main()
