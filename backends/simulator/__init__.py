"""The built-in analytical backend (``simulator``): predicts load points without GPUs.

Modules: ``constants`` (global constants from ``constants.yaml``), ``costs`` (per-step time
of one worker), ``agg`` (aggregated continuous batching), ``disagg`` (prefill/decode pools),
``spread`` (percentiles), ``backend`` (the :class:`~backends.base.Backend` implementation).
"""

from .backend import VERSION, SimulatorBackend
from .constants import Constants, load_constants

__all__ = ["VERSION", "Constants", "SimulatorBackend", "load_constants"]
