"""Entry point: `python train.py [key=value ...]`, `python train.py -m key=a,b ...` for sweeps."""

import hydra
from omegaconf import DictConfig

import mnist_mlp.config  # noqa: F401 - registers train_schema, which conf/train.yaml builds on


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from mnist_mlp.run import run  # torch and Lightning come in once the settings are checked

    return run(cfg)


if __name__ == "__main__":
    main()
