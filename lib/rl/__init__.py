"""Non-stationary average-reward RL (arXiv 2504.16415): notebook 09.

mdp    non-stationary tabular MDPs (piecewise switching, smooth drift), variation budget, RVI
nsnac  NS-NAC (restarts, two-timescale natural actor-critic), BORL-NS-NAC, NAC, oracle restarts
"""
from . import mdp, nsnac  # noqa: F401
