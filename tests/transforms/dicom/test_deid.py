"""De-identification against the independent checker: pydicom's test files and synthetic PHI."""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset

import transforms.dicom.deid as deid_module
from tests.conftest import REFERENCE, TEST_SECRET
from tests.transforms.dicom.checker import check_corpus, count_by_kind
from tests.transforms.dicom.synthetic import PHI_STRINGS, write_synthetic_corpus, write_ultrasound
from transforms.dicom.dates import shift_da, shift_dt
from transforms.dicom.deid import (
    BurnedInPolicy,
    deidentify_dataset,
    deidentify_file,
    read_dicom,
    subject_keys_for_dataset,
    write_dataset,
)
from transforms.dicom.profile import DEFAULT_OPTIONS, ProfileError, load_profile, resolve_profile
from transforms.problems import ItemError
from transforms.pseudonyms import DeidKey

KEY = DeidKey(TEST_SECRET.encode())
NAMESPACE = "zq9"  # a pseudonym starts with its namespace; keep it clear of test names like "Test"
#: Mask a band at the top for files whose pixels may carry burned-in text (pydicom's US/SC).
TOP_BAND = BurnedInPolicy("mask", ((0.0, 0.0, 1.0, 0.1),))


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    write_dataset(ds, buffer)
    buffer.seek(0)
    return pydicom.dcmread(buffer, force=True)


# --------------------------------------------------------------------------- the profile


def test_packaged_table_is_the_standard_table() -> None:
    packaged = (
        Path(__file__).resolve().parents[3] / "transforms" / "dicom" / "data" / "dicom_ps315_annex_e.json"
    )
    assert packaged.read_bytes() == (REFERENCE / "dicom_ps315_annex_e.json").read_bytes()
    rows = json.loads(packaged.read_text())["rows"]
    assert len(load_profile().rows) == len(rows) == 656


def test_profile_resolves_masks_options_and_compounds() -> None:
    basic = resolve_profile(frozenset())
    default = resolve_profile(DEFAULT_OPTIONS)
    assert basic.action_for(0x00101010) == "X" and default.action_for(0x00101010) == "K"  # age
    assert basic.action_for(0x00080020) == "Z" and default.action_for(0x00080020) == "C"  # study date
    assert basic.action_for(0x0008103E) == "X" and default.action_for(0x0008103E) == "C"  # series description
    assert default.action_for(0x50021234) == "X"  # curve data 50xx
    assert default.action_for(0x60FE3000) == "X" and default.action_for(0x60FE4000) == "X"  # overlays
    assert default.action_for(0x60FE0010) is None  # overlay rows: not in the table
    assert default.action_for(0x00100020) == "Z"  # Patient ID Z/D -> Z
    assert default.action_for(0x00082112) == "U*"  # Source Image Sequence X/Z/U*
    assert resolve_profile(frozenset({"retain-uids"})).action_for(0x00080018) == "K"
    # every row of the table gets an action for every option set
    for options in (frozenset(), DEFAULT_OPTIONS):
        resolved = resolve_profile(options)
        assert len(resolved.exact) + len(resolved.masks) == 655  # + the PRIVATE row
        assert resolved.private == "X"
    with pytest.raises(ProfileError, match="unknown de-identification options"):
        load_profile().resolve({"retain-everything"})


# --------------------------------------------------------------------------- dates


@given(
    st.dates(
        min_value=__import__("datetime").date(1900, 1, 1), max_value=__import__("datetime").date(2100, 1, 1)
    ),
    st.integers(min_value=0, max_value=3000),
    st.integers(min_value=-3650, max_value=-364),
)
def test_date_shift_preserves_intervals(start, gap_days: int, offset: int) -> None:
    import datetime as dt

    end = start + dt.timedelta(days=gap_days)
    a, b = shift_da(start.strftime("%Y%m%d"), offset), shift_da(end.strftime("%Y%m%d"), offset)
    parsed = [dt.datetime.strptime(v, "%Y%m%d").date() for v in (a, b)]  # noqa: DTZ007
    assert (parsed[1] - parsed[0]).days == gap_days
    assert (parsed[0] - start).days == offset


def test_dt_keeps_time_zone_and_precision() -> None:
    assert shift_dt("20210314101533.25+0200", -7) == "20210307101533.25+0200"
    assert shift_dt("20210314-0500", -7) == "20210307-0500"
    assert shift_dt("202103", -364) == "202003"
    assert shift_dt("20210101-20210201", -7) == "20201225-20210125"
    with pytest.raises(ValueError):
        shift_dt("2021-03-14", -7)


# --------------------------------------------------------------------------- pydicom's test files


def _pydicom_test_files() -> list[Path]:
    return sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())


def test_pydicom_test_files_zero_findings_after_deid_and_hundreds_before() -> None:
    pairs, raw_pairs, skipped = [], [], {}
    undecodable = []
    warnings.simplefilter("ignore")
    for path in _pydicom_test_files():
        try:
            original = read_dicom(path)
        except ItemError as exc:
            skipped[path.name] = exc.problem.code
            continue
        try:
            out, actions = deidentify_file(path, None, KEY, NAMESPACE, burned_in=TOP_BAND)
        except ItemError as exc:
            assert exc.problem.code == "undecodable_pixels"
            undecodable.append(exc.problem.detail)
            continue
        assert actions, path.name
        pairs.append((path.name, original, _roundtrip(out)))
        raw_pairs.append((path.name, original, original))
    # unreadable files are reported with a reason, not dropped: README, JSON, ICC profile...
    assert {"README.txt", "test1.json", "crayons.icc", "zipMR.gz"} <= set(skipped)
    assert set(skipped.values()) <= {"not_dicom", "unreadable_dicom"}
    # the files that need masking but cannot be decoded name their transfer syntax
    assert all("1.2.840.10008.1.2.4" in detail for detail in undecodable)
    assert len(pairs) >= 150
    findings = check_corpus(pairs)
    assert findings == [], count_by_kind(findings)
    raw = count_by_kind(check_corpus(raw_pairs))
    assert sum(raw.values()) >= 500
    for kind in (
        "private_tag",
        "uid_survived",
        "table_attribute_retained",
        "unshifted_date",
        "identifying_text",
    ):
        assert raw.get(kind, 0) >= 50, (kind, raw)


def test_burned_in_candidates_among_pydicom_files_are_quarantined_by_default() -> None:
    """PS3.15 E.3.1 / PS3.3 C.7.6.1.1.7: with no mask rule, every image flagged YES and every
    ultrasound or secondary capture image without the flag is quarantined; nothing else is."""
    quarantined, passed = set(), set()
    for path in _pydicom_test_files():
        try:
            ds = read_dicom(path)
        except ItemError:
            continue
        try:
            deidentify_dataset(ds, subject_keys_for_dataset(ds, KEY, NAMESPACE), KEY, NAMESPACE)
            passed.add(path.name)
        except ItemError as exc:
            assert exc.problem.code == "burned_in_annotation"
            quarantined.add(path.name)
        flag = str(ds.get("BurnedInAnnotation", "")).upper()
        sop_class = str(ds.get("SOPClassUID", ""))
        # PS3.4 Annex B: US Image (6.1), US Multi-frame (3.1), and their retired forms (6, 3)
        us_classes = {f"1.2.840.10008.5.1.4.1.1.{c}" for c in ("6.1", "3.1", "6", "3", "6.2")}
        is_us = str(ds.get("Modality", "")) == "US" or sop_class in us_classes
        is_sc = sop_class == "1.2.840.10008.5.1.4.1.1.7" or sop_class.startswith("1.2.840.10008.5.1.4.1.1.7.")
        expected = "PixelData" in ds and (flag == "YES" or (not flag and (is_us or is_sc)))
        assert (path.name in quarantined) == expected, path.name
    assert len(quarantined) >= 30 and len(passed) >= 100


# --------------------------------------------------------------------------- synthetic PHI


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("raw")
    corpus = write_synthetic_corpus(root)
    pairs = []
    outputs = {}
    for path in corpus.files:
        out, _ = deidentify_file(path, None, KEY, NAMESPACE)
        back = _roundtrip(out)
        pairs.append((str(path.relative_to(root)), pydicom.dcmread(path), back))
        outputs[path] = back
    return corpus, pairs, outputs


def test_synthetic_corpus_zero_findings_counts_and_references(synthetic) -> None:
    corpus, pairs, outputs = synthetic
    assert check_corpus(pairs) == []
    originals = [o for _, o, _ in pairs]
    results = [d for _, _, d in pairs]
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert len({str(o.get(keyword)) for o in originals}) == len({str(d.get(keyword)) for d in results})
    # the key object's nested references point at the new image UIDs
    kos = outputs[corpus.kos_path]
    study_item = kos.CurrentRequestedProcedureEvidenceSequence[0]
    series_item = study_item.ReferencedSeriesSequence[0]
    new_images = {str(d.SOPInstanceUID) for d in results if d.get("Modality") == "CT"}
    referenced = {str(i.ReferencedSOPInstanceUID) for i in series_item.ReferencedSOPSequence}
    assert referenced <= new_images and len(referenced) == 3
    ct_outputs = [
        outputs[path] for path in corpus.files if outputs[path].get("SeriesDescription") == "AXIAL 5mm"
    ]
    assert study_item.StudyInstanceUID == ct_outputs[0].StudyInstanceUID != corpus.study_uid
    assert series_item.SeriesInstanceUID == ct_outputs[0].SeriesInstanceUID != corpus.ct_series_uid
    assert all(str(d.SOPInstanceUID).startswith("2.25.") for d in results)


def test_synthetic_phi_gone_from_every_byte(synthetic) -> None:
    _corpus, _pairs, outputs = synthetic
    for path, ds in outputs.items():
        blob = io.BytesIO()
        write_dataset(ds, blob)
        data = blob.getvalue().lower()
        for phi in PHI_STRINGS:
            assert phi.lower().encode() not in data, (path.name, phi)
        original = pydicom.dcmread(path)
        for uid in (original.SOPInstanceUID, original.StudyInstanceUID, original.SeriesInstanceUID):
            assert str(uid).encode() not in data


def test_synthetic_markers_ages_dates_and_private(synthetic) -> None:
    _corpus, pairs, _outputs = synthetic
    by_name = {name: (o, d) for name, o, d in pairs}
    original, out = by_name[str(Path("DOE_JOHNATHAN") / "study1" / "ct1.dcm")]
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and {"113105", "113107", "113108"} <= set(codes)
    assert out.PatientAge == "090Y"
    assert out.PatientSex == "M"  # Retain Patient Characteristics
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert "OtherPatientIDs" not in out  # X
    assert out.InstitutionName == ""  # X/Z/D resolves to Z
    assert out.SeriesDescription == "AXIAL 5mm"  # a clean descriptor survives
    assert not out.StudyDescription  # "CT chest for JOHNATHAN" does not
    keys = subject_keys_for_dataset(original, KEY, NAMESPACE)
    assert out.PatientID == out.PatientName == keys.pseudonym
    shifted = str(out.AcquisitionDateTime)
    assert shifted.endswith("101533.250000+0200") and shifted[:8] == shift_da(
        "20210314", keys.date_offset_days
    )
    # two studies of one patient: one offset, so the interval between them survives
    _o2, follow = by_name[str(Path("DOE_JOHNATHAN") / "study2" / "ct1.dcm")]
    assert follow.PatientID == out.PatientID
    import datetime as dt

    days = (dt.date(2022, 3, 20) - dt.date(2021, 3, 14)).days
    d1 = dt.datetime.strptime(str(out.StudyDate), "%Y%m%d")  # noqa: DTZ007
    d2 = dt.datetime.strptime(str(follow.StudyDate), "%Y%m%d")  # noqa: DTZ007
    assert (d2 - d1).days == days


def test_checker_catches_each_planted_fault(synthetic) -> None:
    _corpus, pairs, _ = synthetic
    name, original, clean = pairs[-1]  # the CR image
    faulty = Dataset()
    faulty.update(clean)
    faulty.file_meta = clean.file_meta
    block = faulty.private_block(0x0031, "LEAK", create=True)
    block.add_new(0x10, "LO", "note about ROE^MARY")  # private tag holding the name
    faulty.StudyDate = original.StudyDate  # unshifted date
    faulty.AccessionNumber = original.AccessionNumber  # table attribute retained
    faulty.ImageComments = f"see {original.StudyInstanceUID}"  # original UID inside text
    del faulty.PatientIdentityRemoved
    kinds = Counter(f.kind for f in check_corpus([(name, original, faulty)]))
    for kind in (
        "private_tag",
        "unshifted_date",
        "table_attribute_retained",
        "uid_survived",
        "missing_marker",
    ):
        assert kinds[kind] >= 1, (kind, kinds)
    assert kinds["identifying_text"] >= 2  # the name in the private tag, the accession number


def test_checker_catches_broken_references(synthetic) -> None:
    _corpus, pairs, _outputs = synthetic
    broken = []
    for name, original, out in pairs:
        if out.get("Modality") == "KO":
            copy = _roundtrip(out)
            item = copy.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "2.25.1"
            broken.append((name, original, copy))
        else:
            broken.append((name, original, out))
    kinds = Counter(f.kind for f in check_corpus(broken))
    assert kinds["broken_reference"] == 1


def test_burned_in_is_quarantined_or_masked(tmp_path: Path) -> None:
    path = write_ultrasound(tmp_path / "us.dcm")
    with pytest.raises(ItemError) as info:
        deidentify_file(path, None, KEY, NAMESPACE)
    assert info.value.problem.code == "burned_in_annotation"
    out, actions = deidentify_file(
        path, None, KEY, NAMESPACE, burned_in=BurnedInPolicy("mask", ((0, 0, 0.5, 0.25),))
    )
    pixels = _roundtrip(out).pixel_array
    assert pixels.shape == (32, 40, 3)
    assert (pixels[:8, :20] == 0).all() and (pixels[8:, :] == 200).all() and (pixels[:, 20:] == 200).all()
    assert out.BurnedInAnnotation == "NO" and actions["C:pixels_masked"] == 1
    assert "113101" in {item.CodeValue for item in out.DeidentificationMethodCodeSequence}


def test_uid_remap_is_keyed_and_well_known_uids_stay() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    code = Dataset()
    code.CodingSchemeUID = "2.16.840.1.113883.6.96"  # SNOMED CT, in the registry
    ds.ConceptNameCodeSequence = [code]
    keys = subject_keys_for_dataset(ds, KEY, NAMESPACE)
    out, _ = deidentify_dataset(ds, keys, KEY, NAMESPACE)
    other, _ = deidentify_dataset(ds, keys, DeidKey(b"another-secret-0123456789"), NAMESPACE)
    assert out.SOPClassUID == ds.SOPClassUID
    assert out.ConceptNameCodeSequence[0].CodingSchemeUID == "2.16.840.1.113883.6.96"
    assert out.SOPInstanceUID != other.SOPInstanceUID  # the key matters
    assert int(out.SOPInstanceUID.split(".")[-1]) < 2**128
    assert ds.SOPInstanceUID == "1.2.3.4.5.6"  # not in place by default


def test_pixels_untouched_without_burned_in(synthetic) -> None:
    _corpus, pairs, _ = synthetic
    for _name, original, out in pairs:
        if "PixelData" in original:
            assert np.array_equal(original.pixel_array, out.pixel_array)


def _sr_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "QUINCY^ADA", "P-778899"
    ds.SOPInstanceUID, ds.StudyDate, ds.PatientAge = "1.2.3.4.99", "20200202", "041Y"
    ds.StudyDescription = "Follow-up"
    texts = []
    for value in ("No acute findings.", "Discussed with Ada Quincy by phone", "Phone 5551234567"):
        item = Dataset()
        item.ValueType, item.TextValue = "TEXT", value
        texts.append(item)
    ds.ContentSequence = texts
    return ds


def test_structured_content_removed_by_default_and_cleaned_on_request() -> None:
    ds = _sr_dataset()
    keys = subject_keys_for_dataset(ds, KEY, NAMESPACE)
    basic_out, actions = deidentify_dataset(ds, keys, KEY, NAMESPACE)
    assert len(basic_out.ContentSequence) == 0 and actions["D:sequence_emptied"] == 1
    cleaned, _ = deidentify_dataset(ds, keys, KEY, NAMESPACE, DEFAULT_OPTIONS | {"clean-structured-content"})
    values = [str(item.get("TextValue", "")) for item in cleaned.ContentSequence]
    assert values == ["No acute findings.", "", ""]  # the name and the long number are gone
    codes = {item.CodeValue for item in cleaned.DeidentificationMethodCodeSequence}
    assert "113104" in codes


def test_option_sets_change_what_is_kept() -> None:
    ds = _sr_dataset()
    keys = subject_keys_for_dataset(ds, KEY, NAMESPACE)
    basic, _ = deidentify_dataset(ds, keys, KEY, NAMESPACE, frozenset())
    assert basic.StudyDate == "" and "PatientAge" not in basic and "StudyDescription" not in basic
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"
    kept_uids, _ = deidentify_dataset(ds, keys, KEY, NAMESPACE, DEFAULT_OPTIONS | {"retain-uids"})
    assert kept_uids.SOPInstanceUID == "1.2.3.4.99"
    full_dates, _ = deidentify_dataset(
        ds, keys, KEY, NAMESPACE, {"retain-long-full-dates", "retain-patient-chars", "clean-descriptors"}
    )
    assert (
        full_dates.StudyDate == "20200202"
        and full_dates.LongitudinalTemporalInformationModified == "UNMODIFIED"
    )


def test_per_item_functions_pickle_for_workers() -> None:
    import functools
    import pickle

    fn = functools.partial(deidentify_file, keys=None, uid_key=KEY, namespace=NAMESPACE, burned_in=TOP_BAND)
    clone = pickle.loads(pickle.dumps(fn))
    out, _ = clone(get_testdata_files("CT_small.dcm")[0])
    assert out.PatientIdentityRemoved == "YES"
    assert "redacted" in repr(pickle.loads(pickle.dumps(KEY)))


#: Text the de-identifier itself writes outside the marker attributes (the implementation version
#: name in the file meta, the dummy value of emptied attributes): a planted value that happens to be
#: part of it (hypothesis found given_name="DEID" in "CLIMB_DEID_1") is not a leak.
_TOOL_TEXT = f"{deid_module.IMPLEMENTATION_VERSION_NAME} {deid_module._DUMMY_TEXT} YES DCM".lower()


def _not_tool_text(value: str) -> bool:
    return value.lower() not in _TOOL_TEXT


_NAMES = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), min_size=3, max_size=10
).filter(_not_tool_text)
_IDS = (
    st.text(alphabet=st.sampled_from("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ-"), min_size=3, max_size=12)
    .filter(lambda s: s.strip("-") == s)
    .filter(_not_tool_text)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=_NAMES, given_name=_NAMES, patient_id=_IDS, institution=_NAMES, age=st.integers(0, 120))
def test_random_phi_placements_leave_no_findings(family, given_name, patient_id, institution, age) -> None:
    """Names, IDs and institutions dropped into table attributes, descriptors, nested items,
    private tags and attributes the table does not list: the checker finds nothing after."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = f"1.2.826.0.1.{abs(hash((family, patient_id))) % 10**12}"
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    ds.StudyInstanceUID = ds.SOPInstanceUID + ".1"
    ds.PatientName = f"{family}^{given_name}"
    ds.PatientID = patient_id
    ds.PatientAge = f"{age:03d}Y"
    ds.OtherPatientNames = f"{given_name}^{family}"
    ds.InstitutionName = f"{institution} Hospital"
    ds.StudyDescription = f"chest for {given_name}"
    ds.SeriesDescription = f"PA {patient_id}"
    ds.Manufacturer = f"{family} Imaging"  # not in Table E.1-1: only the last pass can catch it
    ds.StudyDate, ds.AcquisitionDateTime = "20190405", "20190405101010+0100"
    request = Dataset()
    request.RequestedProcedureDescription = f"{family} follow-up"
    request.ScheduledProcedureStepID = patient_id
    ds.RequestAttributesSequence = [request]
    block = ds.private_block(0x0019, "VENDOR", create=True)
    block.add_new(0x01, "LO", f"{family}^{given_name}")
    keys = subject_keys_for_dataset(ds, KEY, NAMESPACE)
    out, _ = deidentify_dataset(ds, keys, KEY, NAMESPACE)
    findings = check_corpus([("random", ds, _roundtrip(out))])
    assert findings == [], findings
    if age > 89:
        assert out.PatientAge == "090Y"
