"""Notebook 10's chapter: nonparametric routing robust to outlier tasks (ProxRouter, arXiv 2510.09852).

* :mod:`lib.routing.router` - the router itself: tilted weights, K-means and kNN anchors, accuracy-cost
  curves and AUC_n (its names are re-exported here, so ``routing.KMeansRouter`` works);
* :mod:`lib.routing.pool` - the model pool of classifiers trained on their own task mixes;
* :mod:`lib.routing.llm` - the measured LLM pool (BIG-bench multiple-choice items, full profile).
"""
from .router import (KMeansRouter, KNNRouter, accuracy_cost_curve, auc_by_group, auc_n, cosine_distance,  # noqa: F401
                     envelope, gap_premise, jaccard_top, kmeans, leave_task_out, route, tilted_weights)
