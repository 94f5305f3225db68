"""How a candidate deployment is measured: the interface, the registry, the built-ins."""

from .base import Backend, PointCallback
from .registry import available, create

__all__ = ["Backend", "PointCallback", "available", "create"]
