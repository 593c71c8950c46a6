"""KL-regularized zero-sum games with bandit feedback (arXiv 2510.13060): notebook 08.

matrix  the regularized game: objective, Gibbs best responses, duality gap, NE solver
omg     OMG for linear bandit matrix games, and its baselines
markov  SOMG for finite-horizon tabular Markov games, and its baselines
"""
from . import markov, matrix, omg  # noqa: F401
