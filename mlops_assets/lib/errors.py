"""Errors the library raises; each message tells the user what to do."""


class MLOpsError(Exception):
    """Base class for errors a user can act on."""


class DatasetError(MLOpsError):
    """The dataset folder cannot be used as given."""


class InvalidImageError(MLOpsError, ValueError):
    """Bytes that are not a usable image."""


class PluginError(MLOpsError):
    """A model plug-in cannot be found or does not honour the interface."""
