"""User-facing errors.

Anything a user can get wrong (a path, a layout, a config key, a file) raises a subclass of `UserError` with a
one-line message that names the file or key and what was expected. The command line prints that line and exits
with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """An error caused by input the user gave; its message is a single line meant for people."""


class ConfigError(UserError):
    """Unknown config key, bad value type or value out of the allowed choices."""


class DataError(UserError):
    """A dataset is missing, in the wrong layout, or a file in it cannot be read."""


class CheckpointError(UserError):
    """A checkpoint is unreadable, corrupted, or belongs to another model."""


class TrainingError(UserError):
    """Training cannot go on (e.g. the loss became NaN/inf); the last good checkpoint is kept."""
