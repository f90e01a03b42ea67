"""The settings: their schema, their checks, and the command line as Hydra reads it."""

from mnist_mlp.config import schema  # noqa: F401 - registers train_schema with Hydra
