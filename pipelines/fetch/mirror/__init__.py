"""Loopback servers that speak each host's protocol, with fault injection.

Tests, benchmarks and the embedded demo mirror run the real fetch code against these:
:class:`~pipelines.fetch.mirror.physionet.PhysioNetMirror`, the Kaggle REST API
(:mod:`.kaggle`), TCIA/NBIA (:mod:`.tcia`), GitHub archives (:mod:`.github`), Google Drive
(:mod:`.gdrive`) and the Hugging Face Hub (:mod:`.huggingface`). S3 is moto's own
``ThreadedMotoServer``. Start one from a shell with ``python -m pipelines.fetch.mirror --help``.
"""

from pipelines.fetch.mirror.server import Faults, MirrorServer, ServerStats

__all__ = ["Faults", "MirrorServer", "ServerStats"]
