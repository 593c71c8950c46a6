"""lib: the federated-learning replication workbook's library.

Modules (import what you use; ``import lib`` itself stays light):

- ``lib.data``        datasets by name, offline-first loaders, :class:`DataError`
- ``lib.partition``   IID, two Dirichlet conventions, shards; partition statistics
- ``lib.models``      MLP, CNNs, CIFAR ResNet-18 (BatchNorm/GroupNorm), text classifier
- ``lib.params``      models as flat parameter vectors
- ``lib.client``      local training (SGD, momentum, weight decay, FedProx/SCAFFOLD hooks), evaluation
- ``lib.strategies``  server methods by name: FedAvg, FedAvgM, FedProx, SCAFFOLD, FedNova, FedAdam, FedYogi, FedExP
- ``lib.fl``          the synchronous federated loop and its records
- ``lib.clock``       simulated client time (reused by the asynchronous engine)
- ``lib.profiles``    quick/full profiles; ``lib.claims`` claims tables; ``lib.report`` REPORT.md
- ``lib.plotting``    figures (saved under figures/); ``lib.records`` tidy CSVs under results/
- ``lib.executors``   where a sweep's runs execute: local processes, Ray, SLURM (``WORKBOOK_EXECUTOR``)
- ``lib.initmatters`` the two-layer CNN model of arXiv 2502.08024 (notebook 01)
"""
__version__ = "0.1.0"
