"""The paper's cohort against the real RICORD 1c index (idc-index-data) and COVID-Net's lists.

Expected values: the paper's Table 1 (sex: 161 male, 97 female of 258 patients; age 59.11 +- 16.19,
stages/reference) and the issue's reading of the index (ages in the headers of 131 of the 258
patients, none at site SITE2, mean 57.98 +- 16.74). Skips without idc-index-data or ../shared/data.
"""

from __future__ import annotations

import pandas as pd

from stages.dicomio.read import age_string_to_years, sex_code
from stages.group import cohort_demographics
from stages.sources.covidnet_files import RICORD_PREFIX


def _study_of(real_index: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(patient without prefix, last 5 of StudyInstanceUID) -> the study's series rows."""
    keyed = real_index.assign(patient=real_index.PatientID.str.removeprefix(RICORD_PREFIX),
                              study5=real_index.StudyInstanceUID.str[-5:])
    return {key: rows for key, rows in keyed.groupby(["patient", "study5"], sort=False)}


def test_the_909_listed_images_resolve_to_real_studies(real_index, listed_names):
    """Each name MIDRC-RICORD-1C-<patient>-<uid5>-<i> matches one study of the index (by patient and
    the last 5 characters of its UID), and <i> is below the study's instance count."""
    studies = _study_of(real_index)
    assert len(listed_names) == 909
    for name in listed_names:
        patient, study5, index = name.removeprefix(RICORD_PREFIX).rsplit("-", 2)
        rows = studies[(patient, study5)]
        assert rows.StudyInstanceUID.nunique() == 1, name
        assert int(index) < rows.instanceCount.sum(), name


def _listed_patients(real_index: pd.DataFrame, listed_names: set[str]) -> pd.DataFrame:
    """The index's series of the listed patients, as the image table holds headers (one row each)."""
    patients = {RICORD_PREFIX + n.removeprefix(RICORD_PREFIX).rsplit("-", 2)[0] for n in listed_names}
    rows = real_index[real_index.PatientID.isin(patients)]
    return pd.DataFrame({"patient_id": rows.PatientID,
                         "patient_age_years": [age_string_to_years(a) for a in rows.PatientAge],
                         "patient_sex": [sex_code(s) for s in rows.PatientSex], "view": "UNKNOWN"})


def test_table1_from_the_headers(real_index, listed_names):
    """Sex from the headers gives the paper's 161 / 97 exactly; age is in the headers of only 131
    of the 258 patients (none of site SITE2), so the headers cannot give the paper's age row."""
    images = _listed_patients(real_index, listed_names)
    table1 = cohort_demographics(images.astype({"patient_age_years": "Float64"}))
    assert table1["patients"] == 258
    assert table1["sex"] == {"male": 161, "female": 97, "other": 0, "unknown": 0}
    assert table1["patients_with_age"] == 131
    assert (table1["age_mean"], table1["age_sd"]) == (57.98, 16.74)
    site2 = images[images.patient_id.str.startswith(RICORD_PREFIX + "SITE2-")]
    assert site2.patient_id.nunique() > 0 and site2.patient_age_years.isna().all()
