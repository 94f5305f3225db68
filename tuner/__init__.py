"""The tuner: study, Pareto front, SLA pick, exports and the command line."""

__version__ = "0.1.0"
__all__ = ["__version__"]
