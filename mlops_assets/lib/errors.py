"""Errors the library raises; each message tells the user what to do."""

# Set (e.g. by `mlops --debug`) to print a user error's stack trace too; without it, a user error (an MLOpsError) is
# shown as its message alone.
DEBUG_VARIABLE = "MLOPS_DEBUG"


class MLOpsError(Exception):
    """Base class for errors a user can act on."""


class DatasetError(MLOpsError):
    """The dataset folder cannot be used as given."""


class InvalidImageError(MLOpsError, ValueError):
    """Bytes that are not a usable image."""


class PluginError(MLOpsError):
    """A model plug-in cannot be found or does not honour the interface."""


class TrainingError(MLOpsError):
    """Training could not start or did not finish; nothing was stored."""
