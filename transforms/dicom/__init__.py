"""DICOM: PS3.15 de-identification, 2D readers and canonical form.

Compose per item: ``read_dicom`` → ``deidentify_dataset`` (or ``deidentify_file``) →
``canonicalise_dicom_image`` → ``validate``; JPEG/PNG sources: ``read_image_file`` →
``canonicalise_raw_image`` → ``validate``.
"""

from transforms.dicom.canonical import (
    Image2DSample,
    Image2DSpec,
    canonicalise_dicom_frames,
    canonicalise_dicom_image,
    canonicalise_raw_image,
)
from transforms.dicom.deid import (
    BurnedInPolicy,
    deidentify_dataset,
    deidentify_file,
    read_dicom,
    subject_keys_for_dataset,
    write_dataset,
)
from transforms.dicom.profile import DEFAULT_OPTIONS
from transforms.dicom.read import read_image_file
from transforms.dicom.validate import validate

__all__ = [
    "DEFAULT_OPTIONS",
    "BurnedInPolicy",
    "Image2DSample",
    "Image2DSpec",
    "canonicalise_dicom_frames",
    "canonicalise_dicom_image",
    "canonicalise_raw_image",
    "deidentify_dataset",
    "deidentify_file",
    "read_dicom",
    "read_image_file",
    "subject_keys_for_dataset",
    "validate",
    "write_dataset",
]
