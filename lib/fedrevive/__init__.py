"""FedRevive (arXiv 2511.00655): asynchronous FL that revives stale updates with data-free KD.

=============== ===========================================================
module          what it holds
=============== ===========================================================
strategy.py     the server's update: hybrid aggregation, gates, teachers
teachers.py     teacher weights w_m(j); class proportions from noise probes
diagnostics.py  pool informativeness, ensemble accuracy, D_KD alignment
generator.py    conditional image generator; text (embedding + mask) generator
synthesis.py    Reptile-style meta-learned synthesis, its three losses, the pool
distill.py      multi-teacher KD of the global model on the pool -> D_KD
servertime.py   calibrating the server's per-step times for the engine's server clock
=============== ===========================================================
"""
from .distill import KDConfig, dfkd_step_equivalents, distill, stabilize_kd_loss
from .generator import ImageGenerator, TextGenerator, make_generator
from .strategy import DD_AUTHORS_SETTINGS, DDFedRevive, DDFedReviveAuthors, FedRevive, FedRevivePerturb
from .servertime import calibrate, client_task_seconds
from .synthesis import SynthesisConfig, Synthesizer, SyntheticPool, synthesis_losses
from .teachers import Teacher, estimate_class_proportions, teacher_weights

__all__ = ["FedRevive", "FedRevivePerturb", "DDFedRevive", "DDFedReviveAuthors", "DD_AUTHORS_SETTINGS",
           "calibrate", "client_task_seconds", "stabilize_kd_loss", "KDConfig", "dfkd_step_equivalents", "SynthesisConfig", "Synthesizer", "SyntheticPool", "Teacher", "distill",
           "estimate_class_proportions", "teacher_weights", "make_generator", "ImageGenerator", "TextGenerator",
           "synthesis_losses"]
