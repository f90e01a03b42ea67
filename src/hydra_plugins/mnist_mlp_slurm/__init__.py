"""hydra/launcher=slurm (conf/hydra/launcher/slurm.yaml). Hydra takes launchers only from the
hydra_plugins package; the code is mnist_mlp.slurm's. Without the [slurm] extra (submitit and
Hydra's submitit launcher) there is nothing to register."""

try:
    from mnist_mlp.slurm import launcher as slurm
except ImportError:  # pragma: no cover - the [slurm] extra is not installed
    slurm = None

if slurm is not None:

    class SlurmLauncher(slurm.SlurmLauncher):
        pass
