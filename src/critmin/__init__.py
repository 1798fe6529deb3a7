"""critmin: a calibrated world market for critical minerals and the policies that reshape it."""

__version__ = "0.1.0"
