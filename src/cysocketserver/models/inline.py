"""Requests handled in the serving thread, one after the other: the plain servers' model."""
from .base import Model

__all__ = ["Inline"]


class Inline(Model):
    name = "inline"
