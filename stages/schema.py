"""Table schemas and on-disk layout shared by every stage.

Every data source (the synthetic phantom, RSNA RICORD 1c, COVIDx) writes the same raw layout and
every stage reads and writes the tables below, so a stage never needs to know where the data came
from. Column order here is the order written to CSV.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Raw layout under ``data/raw`` (written by ``acquire``; never modified afterwards)
#
#   ricord/images/**/*.dcm           DICOM radiographs (any sub-folder layout; found recursively)
#   ricord/annotations.json          one MD.ai export (labelGroups / datasets / annotations)
#   covidx/images/<filename>         PNG/JPEG pretraining images
#   covidx/train.txt, covidx/test.txt  COVIDx label lists: ``patient_id filename label source``
#   covidnet/                         COVID-Net reference files (COVIDxSev lists, crop boxes), when fetched
#   SOURCE.json                       which source wrote the folder and with which settings
#   synthetic_truth/*.csv             synthetic source only: the planted truth, for tests
# ---------------------------------------------------------------------------------------------
RICORD_DIR = "ricord"
RICORD_IMAGES_DIR = "ricord/images"
RICORD_ANNOTATIONS = "ricord/annotations.json"
COVIDX_DIR = "covidx"
COVIDX_IMAGES_DIR = "covidx/images"
COVIDX_LISTS = {"train": "covidx/train.txt", "test": "covidx/test.txt"}
COVIDX_MISSING = "covidx/missing.txt"  # "<list> <filename>" per listed image acquire could not find
COVIDNET_DIR = "covidnet"
SEVERITY_REFERENCE_LISTS = {"train": "covidnet/train_COVIDxSev.txt", "test": "covidnet/test_COVIDxSev.txt"}
RICORD_CROP_BOXES = "covidnet/ricord_data_set.txt"
SOURCE_MANIFEST = "SOURCE.json"
SYNTHETIC_TRUTH_DIR = "synthetic_truth"

# Labels of the RICORD airspace label group, exactly as in the MD.ai export (two spaces in Mild).
MILD = "Mild Opacities  (1-2 lung zones)"
MODERATE = "Moderate Opacities (3-4 lung zones)"
SEVERE = "Severe Opacities (>4 lung zones)"
INVALID = "Invalid Study"
AIRSPACE_LABELS = (MILD, MODERATE, SEVERE, INVALID)
AIRSPACE_GROUP = "Airspace Disease Grading"
CLASSIFICATION_LABELS = (
    "Typical Appearance",
    "Indeterminate Appearance",
    "Atypical Appearance",
    "Negative for Pneumonia",
)
CLASSIFICATION_GROUP = "Classification"

# Study grade names used inside the pipeline, and their airspace level (the paper's grouping).
GRADE_OF_LABEL = {MILD: "mild", MODERATE: "moderate", SEVERE: "severe", INVALID: "invalid"}
LEVEL_OF_GRADE = {"mild": 1, "moderate": 2, "severe": 2}
LEVELS = (1, 2)

# HIPAA Safe Harbor (45 CFR 164.514(b)(2)(i)(C)) aggregates every age over 89 into one category,
# so the image table stores any age of 90 or more as 90, meaning "90 or older".
AGE_CAP_YEARS = 90
PATIENT_SEXES = ("M", "F", "O")  # DICOM PatientSex codes the image table keeps (else empty)
VIEWS = ("AP", "PA", "UNKNOWN")  # views the image table may hold (``ingest.views`` picks among them)
DICOM_VIEWS = VIEWS + ("LATERAL",)  # what the DICOM reader reports; laterals are always left out
SPLITS = ("train", "val", "test")
# The leakage audit's hashes of a severity image, as ingest writes them (stages.ingest.severity_hashes).
SEVERITY_HASH_COLUMNS = ("pixel_sha256", "phash", "phash_cropped", "phash_mirrored")
# How each data source is named in every heading that shows its numbers: one entry per source of
# ``stages.sources.SOURCES``, which takes its titles from here (every stage reads this module).
SOURCE_TITLES = {
    "synthetic": "synthetic phantoms (embedded cohort; not clinical results)",
    "ricord": "RSNA RICORD 1c (real data)",
}
COVIDX_CLASSES = ("positive", "negative")

# ---------------------------------------------------------------------------------------------
# Tables (CSV under data/tables)
# ---------------------------------------------------------------------------------------------
# ingest -> severity_images.csv: one row per RICORD-style radiograph that decoded.
SEVERITY_IMAGE_COLUMNS = [
    "image_id",  # MIDRC-RICORD-1C-{patient}-{last 5 of StudyInstanceUID}-{i}
    "patient_id",
    "study_uid",
    "series_uid",
    "sop_uid",
    "raw_path",  # relative to data/raw
    "image_path",  # relative to the processed image folder
    "modality",
    "view",
    "rows",
    "columns",
    "photometric",
    "bits_stored",
    "transfer_syntax",
    "source",
    "pixel_sha256",  # sha256 of the 8-bit display pixels (stages.imaging.hashing)
    "phash",  # perceptual DCT hash, hex (catches resized or re-encoded copies)
    "phash_cropped",  # phash after COVID-Net's crop box (= phash when the image has none)
    "phash_mirrored",  # phash of the image mirrored left-right (catches flipped copies)
    "patient_age_years",  # from PatientAge, whole years; 90 means 90 or older (HIPAA); empty: unknown
    "patient_sex",  # M | F | O; empty: absent or another value
]
# ingest -> pretrain_images.csv: one row per COVIDx-style image that decoded.
PRETRAIN_IMAGE_COLUMNS = [
    "image_id",
    "patient_id",
    "filename",
    "label",  # positive | negative
    "covidx_source",
    "list",  # train | test (which COVIDx list named it)
    "raw_path",
    "image_path",
    "rows",
    "columns",
    "source",
    "pixel_sha256",
    "phash",
]
# ingest -> rejects.csv: files that could not be used (kind "unreadable", counted against
# ingest.max_reject_fraction) or were left out by a setting (kind "filtered", e.g. a view), and why.
REJECT_COLUMNS = ["raw_path", "cohort", "kind", "reason"]

# group -> labels.csv: one row per labelled severity image.
LABEL_COLUMNS = [
    "image_id",
    "patient_id",
    "study_uid",
    "n_readers",
    "reader_grades",  # ';'-joined grades in annotation order
    "study_grade",  # mild | moderate | severe
    "airspace_level",  # 1 | 2
]
# group -> metrics/cohort.json demographics: per-patient age bins, in the paper's Table 1 order
# (the last bin holds ages stored as 90, i.e. 90 or older).
AGE_BINS = ("<20", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+")

# group -> excluded_studies.csv
EXCLUDED_STUDY_COLUMNS = ["study_uid", "patient_id", "reason"]

# split -> split.csv
SPLIT_COLUMNS = ["image_id", "patient_id", "split", "airspace_level", "image_path"]

# validate -> pretrain_audited.csv: pretrain_images.csv less the images the leakage audit excluded
# (same columns); the pretraining stage reads only this table.
PRETRAIN_AUDITED_TABLE = "pretrain_audited.csv"
# validate -> leakage matches: one row per (severity image, pretraining image) pair that matched.
# A method names what matched: the patient, the file name, the exact pixels, or a severity hash
# (whole, cropped by COVID-Net's box, mirrored) within validate.phash_max_distance of the other image's.
LEAKAGE_METHODS = ("patient_id", "filename", "pixel_sha256", "phash", "phash_cropped", "phash_mirrored")
LEAKAGE_MATCH_COLUMNS = ["severity_image_id", "severity_split", "pretrain_image_id", "pretrain_list",
                         "methods", "phash_distance"]
# validate -> leakage cross-split matches: a severity val/test image and a severity train image that
# share a patient or content.
CROSS_SPLIT_MATCH_COLUMNS = ["image_id", "split", "train_image_id", "methods", "phash_distance"]
# synthetic source -> the disguised copies of severity images it planted in the pretraining cohort.
PLANTED_LEAKS = "synthetic_truth/planted_leaks.csv"
