"""Entry point: `python train.py [key=value ...]`, `python train.py -m key=a,b ...` for sweeps."""

import hydra
from omegaconf import DictConfig

from mnist_mlp.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
