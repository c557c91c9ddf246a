"""User-facing errors. The CLI turns these into one message and exit code 2 (no traceback)."""


class UserError(Exception):
    """Bad config or bad input: the message says what is wrong and how to fix it."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class TrainingError(UserError):
    """Training cannot go on (diverged, non-finite loss): the message names the last good checkpoint."""
