"""The one exception a user should see as a sentence rather than a traceback."""


class UsageError(Exception):
    """Bad input (config, data files): the message says what was wrong and what to do."""
