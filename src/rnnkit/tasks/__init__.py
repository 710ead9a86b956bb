"""Tasks: what the one training loop (:func:`rnnkit.train.train`) needs to know about a problem."""

from rnnkit.tasks.base import Task

__all__ = ["Task"]
