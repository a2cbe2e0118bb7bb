"""ECG: readers, canonical form, de-identification and validation.

Quick start::

    from transforms.ecg import EcgSpec, read_wfdb_record, canonicalise
    windows = canonicalise(read_wfdb_record("HR06000.hea"), EcgSpec())
"""

from transforms.ecg.canonical import STANDARD_12, EcgSample, EcgSpec, canonicalise
from transforms.ecg.read import RawEcg, read_cpsc2018_mat, read_wfdb_record

__all__ = [
    "STANDARD_12",
    "EcgSample",
    "EcgSpec",
    "RawEcg",
    "canonicalise",
    "read_cpsc2018_mat",
    "read_wfdb_record",
]
