"""Synthetic DICOM files carrying PHI, written with pydicom (provenance: made here, not copied).

:func:`write_synthetic_corpus` writes two patients: patient A with two studies (a CT series of
three images, a second series, and a Key Object Selection document referencing the images and
series through nested sequences), patient B with one CR image. The files carry names, IDs,
addresses, an institution, a private tag copying the patient's name, a DT with a UTC offset,
an age over 89, and free-text descriptors with and without identifying content.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
KEY_OBJECT = "1.2.840.10008.5.1.4.1.1.88.59"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"

#: Identifying strings planted in the synthetic files; none may appear in any output byte.
PHI_STRINGS = (
    "DOE^JOHNATHAN",
    "Johnathan",
    "MRN-4455667",
    "ACC-99887766",
    "St Elsewhere General Hospital",
    "42 Wallaby Way Sydney",
    "DR^HOUSE^GREGORY",
    "ROE^JANE",
    "MRN-1122334",
    "WORKSTATION-7",
    "+1-555-0100",
)


@dataclass(frozen=True)
class SyntheticCorpus:
    """What was written: file paths and the original UIDs of patient A's first study."""

    files: list[Path]
    study_uid: str
    ct_series_uid: str
    ct_instance_uids: list[str]
    kos_path: Path


def _base(patient_name: str, patient_id: str, study_uid: str, study_date: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = "WORKSTATION-7"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19300215"
    ds.PatientSex = "M"
    ds.PatientAge = "094Y"
    ds.PatientAddress = "42 Wallaby Way Sydney"
    ds.PatientTelephoneNumbers = "+1-555-0100"
    ds.OtherPatientIDs = "MRN-OTHER-0001"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-99887766"
    ds.StudyID = "STUDY-77"
    ds.InstitutionName = "St Elsewhere General Hospital"
    ds.InstitutionAddress = "1 Hospital Road Boston"
    ds.ReferringPhysicianName = "DR^HOUSE^GREGORY"
    ds.StationName = "WORKSTATION-7"
    ds.StudyDescription = f"CT chest for {patient_name.split('^')[-1]}"
    ds.AcquisitionDateTime = study_date + "101533.250000+0200"
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = "101600"
    # a vendor's private block copying the patient's name and ID
    block = ds.private_block(0x0029, "ACME_PRIVATE", create=True)
    block.add_new(0x10, "LO", patient_name)
    block.add_new(0x11, "LO", patient_id)
    return ds


def _add_pixels(ds: Dataset, rows: int = 16, cols: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 4095, size=(rows, cols), dtype=np.uint16)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = arr.tobytes()


def _ct_image(base: Dataset, series_uid: str, frame_uid: str, number: int) -> Dataset:
    ds = copy.deepcopy(base)  # Dataset.update would share element objects between files
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = "AXIAL 5mm"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.FrameOfReferenceUID = frame_uid
    ds.OperatorsName = "ROE^JANE"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    _add_pixels(ds, seed=number)
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_synthetic_corpus(root: Path) -> SyntheticCorpus:
    """Write the synthetic corpus under ``root`` (folders named after the patients, as raw
    exports often are) and return what was written."""
    files: list[Path] = []
    study_uid, study2_uid = generate_uid(), generate_uid()
    ct_series, second_series, kos_series = generate_uid(), generate_uid(), generate_uid()
    frame_uid = generate_uid()
    base = _base("DOE^JOHNATHAN", "MRN-4455667", study_uid, "20210314", CT_IMAGE)
    images = [_ct_image(base, ct_series, frame_uid, n) for n in (1, 2, 3)]
    for n, ds in enumerate(images, start=1):
        files.append(_write(ds, root / "DOE_JOHNATHAN" / "study1" / f"ct{n}.dcm"))
    other = _ct_image(base, second_series, frame_uid, 4)
    other.SeriesDescription = "Derived from Johnathan scout"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE
    ref.ReferencedSOPInstanceUID = images[0].SOPInstanceUID
    other.ReferencedImageSequence = Sequence([ref])
    files.append(_write(other, root / "DOE_JOHNATHAN" / "study1" / "derived.dcm"))

    # Key Object Selection: nested references to every CT image, by study and series
    kos = copy.deepcopy(base)
    kos.SOPClassUID = kos.file_meta.MediaStorageSOPClassUID = KEY_OBJECT
    kos.SOPInstanceUID = kos.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    kos.Modality = "KO"
    kos.SeriesInstanceUID = kos_series
    kos.ContentDate, kos.ContentTime = "20210315", "090000"
    kos.ContentCreatorName = "DOE^JOHNATHAN"
    sop_items = []
    for image in images:
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        sop_items.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = ct_series
    series_item.ReferencedSOPSequence = Sequence(sop_items)
    study_item = Dataset()
    study_item.StudyInstanceUID = study_uid
    study_item.ReferencedSeriesSequence = Sequence([series_item])
    kos.CurrentRequestedProcedureEvidenceSequence = Sequence([study_item])
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "113000", "DCM", "Of Interest"
    kos.ConceptNameCodeSequence = Sequence([concept])
    kos_path = _write(kos, root / "DOE_JOHNATHAN" / "study1" / "kos.dcm")
    files.append(kos_path)

    # the same patient, a second study a year later
    follow = _ct_image(
        _base("DOE^JOHNATHAN", "MRN-4455667", study2_uid, "20220320", CT_IMAGE),
        generate_uid(),
        generate_uid(),
        1,
    )
    files.append(_write(follow, root / "DOE_JOHNATHAN" / "study2" / "ct1.dcm"))

    # another patient: one CR image
    cr = _base("ROE^MARY", "MRN-1122334", generate_uid(), "20200101", CR_IMAGE)
    cr.PatientAge = "045Y"
    cr.Modality = "CR"
    cr.SeriesInstanceUID = generate_uid()
    cr.StudyDescription = "CHEST PA"
    cr.PixelSpacing = [0, 0]
    cr.ImagerPixelSpacing = [0.139, 0.139]
    _add_pixels(cr, seed=9)
    files.append(_write(cr, root / "ROE_MARY" / "cr.dcm"))
    return SyntheticCorpus(files, study_uid, ct_series, [i.SOPInstanceUID for i in images], kos_path)


def write_ultrasound(path: Path) -> Path:
    """An ultrasound image without BurnedInAnnotation (burned-in text presumed), 32 x 40 RGB."""
    ds = _base("DOE^JOHNATHAN", "MRN-4455667", generate_uid(), "20210314", US_IMAGE)
    ds.Modality = "US"
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = 32, 40
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((32, 40, 3), 200, dtype=np.uint8).tobytes()
    return _write(ds, path)
