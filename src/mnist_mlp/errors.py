"""The exceptions a user should see as a sentence rather than a traceback."""


class UsageError(Exception):
    """Bad input (config, data files): the message says what was wrong and what to do."""


class Diverged(Exception):
    """The training loss stopped being finite: the message says where and what to try."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped training: the message says what was kept and how to resume."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 128 + the signal number, as a shell reports it
