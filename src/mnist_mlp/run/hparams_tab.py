"""TensorBoard's HParams tab: each run's settings and its status (the scores are its scalars)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard.writer import FileWriter

from mnist_mlp.config.schema import AUTO

# The suffixes of the event files that hold a run's settings and its end: files of their own.
START, END = ".hparams", ".hparams_end"
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


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """One hparams-plugin summary, as TensorBoard's own writers make it."""
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def declare(run_dir: Path, settings: dict) -> None:
    """The run's settings, for TensorBoard's HParams tab.

    Only the session's start is written, no experiment summary: with one per run, TensorBoard
    takes an arbitrary run's, in which nothing varies, and opens on the first keys by name.
    Without it, TensorBoard compares the runs' settings itself and puts the keys that vary
    first. Numbers are numbers, so a sweep's batch sizes sort 32, 64, 128.
    """
    start = plugin_data_pb2.SessionStartInfo()
    for key, value in settings.items():
        if key == "batch_size" and value == AUTO:
            continue  # left empty, so the others' stay numbers; its auto_batch.* columns say it
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, int | float):  # numbers sort as numbers: 32 before 128
            start.hparams[key].number_value = value
        else:
            start.hparams[key].string_value = str(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    # A resumed run's settings replace those it was started with (epochs may have grown).
    for earlier in (*run_dir.glob(f"*{START}"), *run_dir.glob(f"*{END}")):
        earlier.unlink()
    _write(run_dir, START, _summary(metadata.SESSION_START_INFO_TAG, data))


def end(run_dir: Path, settings: dict, status: str) -> None:
    """How the run ended, as metrics.json says it (for a run that declared its settings): as
    TensorBoard's session status, which its status filter reads, and as a `status` column
    beside the settings, since HParams 2.21 shows no status column of its own (a sweep whose
    runs did not all end alike shows it among the columns that vary)."""
    if not any(run_dir.glob(f"*{START}")):
        return  # another logger, or the run stopped before it was built
    declare(run_dir, settings | {"status": status})
    end_info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(STATUSES[status]))
    data = plugin_data_pb2.HParamsPluginData(session_end_info=end_info)
    _write(run_dir, END, _summary(metadata.SESSION_END_INFO_TAG, data))
