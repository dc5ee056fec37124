"""obliviate: make a trained language model forget specific data, and prove it with measurements."""

from obliviate.errors import DataError, ObliviateError

__version__ = "0.1.0"
__all__ = ["DataError", "ObliviateError", "__version__"]
