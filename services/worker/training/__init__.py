"""Fine-tuning on the train queue: full, LoRA, QLoRA and prefix tuning (see ``job.py``).

- ``data.py``     the data set: inline rows or a file under the data folder, checked, split
- ``model.py``    the base for the objective, wrapped for the strategy, one dry pass
- ``progress.py`` progress to the job row; the loss-curve PNG
- ``job.py``      the whole job: train (resumable from checkpoints), save, register

Nothing here imports torch at import time: the runner imports this module in
every worker, and only a train worker runs it.
"""

from __future__ import annotations

from typing import Final

#: Tasks the runner hands to :func:`services.worker.training.job.fine_tune`.
TRAINING_TASKS: Final = frozenset({"fine-tune"})
