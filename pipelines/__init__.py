"""climb-etl orchestration: fetchers, stages, backends, Prefect flows and the ``climb`` CLI.

Each worker process runs one transform at a time, so BLAS/OpenMP thread pools are pinned to
one thread unless the user says otherwise: on a busy machine their spinning threads cost
far more than they give (measured: a per-sample ``np.dot`` went from microseconds to 20 ms
with five other processes on two cores).
"""

import os as _os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
