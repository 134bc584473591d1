"""sealtune: helpers for training scripts run by a sealtune worker (or standalone on a laptop)."""

from ._native import __version__

__all__ = ["__version__"]
