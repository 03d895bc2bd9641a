"""Fidelity tests: an accelerated run must end in exactly the state of the plain run."""
