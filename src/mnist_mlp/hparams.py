"""TensorBoard's HParams tab: each run's settings, the scores to compare runs by, its status."""

from __future__ import annotations

from pathlib import Path

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard.summary import hparams as hparams_summaries
from torch.utils.tensorboard.writer import FileWriter

# The scalars a run is judged by: the best checkpoint's validation scores (logged apart from the
# val/ curves, which stay one model's history) and its test scores.
SHOWN = ("best/val/acc", "best/val/loss", "test/acc", "test/loss")
# metrics.json's status -> TensorBoard's.
STATUSES = {
    "ok": "STATUS_SUCCESS",
    "diverged": "STATUS_FAILURE",
    "failed": "STATUS_FAILURE",
    "interrupted": "STATUS_UNKNOWN",  # it can be resumed
}


def _write(run_dir: Path, suffix: str, *summaries: Summary) -> None:
    """Into an event file of its own in the run dir: TensorBoard reads it as the same run."""
    writer = FileWriter(str(run_dir), filename_suffix=suffix)
    for summary in summaries:
        writer.add_summary(summary)
    writer.close()


def declare(run_dir: Path, settings: dict) -> None:
    """The run's settings and the score tags; the scores' values are the logged scalars, so no
    made-up point lands on a curve."""
    experiment, session_start, _ = hparams_summaries(settings, dict.fromkeys(SHOWN, 0.0))
    _write(run_dir, ".hparams", experiment, session_start)


def end(run_dir: Path, status: str) -> None:
    """How the run ended, as metrics.json says it (for a run that declared its settings)."""
    if not any(run_dir.glob("events.out.tfevents.*.hparams")):
        return  # another logger, or the run stopped before it was built
    info = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(STATUSES[status])
        ),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=info.SerializeToString()
    )
    summary = Summary(
        value=[
            Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin)
            )
        ]
    )
    _write(run_dir, ".hparams_end", summary)
