"""Work that outgrows one machine, on Ray: a catalog classified by actors that each hold
a torch-free ``Classifier`` (``classify_on_ray``), and the feature cache filled by tasks
before a training run (``ray_jobs``, the ``run_jobs`` of ``musemo.data.load_dataset``).
Both start a local Ray when given no address and join a running cluster when given one
(``connect``).

Needs the ``ray`` extra (``pip install 'musemo[ray]'``); Ray is imported when a
function needs it, not when this package is imported.
"""

from .cache import ray_jobs
from .cluster import connect
from .jobs import classify_on_ray

__all__ = ["classify_on_ray", "connect", "ray_jobs"]
