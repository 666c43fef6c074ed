"""Runnable examples; the test suite imports and gradient-checks them."""
