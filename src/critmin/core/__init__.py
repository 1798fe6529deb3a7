"""Layer 1: dimensions, units, errors, typed specs. Imports nothing else from critmin."""
