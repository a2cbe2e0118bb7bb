"""ECG: readers, canonical form, de-identification and validation.

Quick start::

    from transforms.ecg import EcgSpec, canonicalise, deidentify, read_wfdb_record, validate
    windows = canonicalise(read_wfdb_record("HR06000.hea"), EcgSpec())
    clean, actions = deidentify(windows[0], subject_keys, record_pseudonym)
    assert validate(clean, EcgSpec()) == []

Labels (SNOMED CT codes, CLIMB's 7 superclasses) live in :mod:`transforms.ecg.labels`.
"""

from transforms.ecg.canonical import STANDARD_12, EcgSample, EcgSpec, canonicalise
from transforms.ecg.deid import deidentify
from transforms.ecg.read import RawEcg, read_cpsc2018_mat, read_wfdb_record
from transforms.ecg.validate import validate

__all__ = [
    "STANDARD_12",
    "EcgSample",
    "EcgSpec",
    "RawEcg",
    "canonicalise",
    "deidentify",
    "read_cpsc2018_mat",
    "read_wfdb_record",
    "validate",
]
