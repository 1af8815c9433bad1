"""The project's whole-scan test patients, held out of every training, tuning and selection step.

LIDC-IDRI-0001, 0002 and 0003 are the whole-scan test patients (see the data README). Their
nodules must not be in the VOI set, and their CT series must not enter training through any
other layout either: LUNA16 is built from LIDC-IDRI and contains these very series, so readers
that only know series UIDs drop them by UID.
"""

from __future__ import annotations

#: patient id -> SeriesInstanceUID of the CT series of each whole-scan test patient.
WHOLE_SCAN_TEST_SERIES: dict[str, str] = {
    "LIDC-IDRI-0001": "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
    "LIDC-IDRI-0002": "1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919",
    "LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264",
}
WHOLE_SCAN_TEST_PATIENTS = frozenset(WHOLE_SCAN_TEST_SERIES)
WHOLE_SCAN_TEST_SERIES_UIDS = frozenset(WHOLE_SCAN_TEST_SERIES.values())


def is_held_out(identifier: str) -> bool:
    """Whether a patient id or series UID belongs to a whole-scan test patient."""
    return identifier in WHOLE_SCAN_TEST_PATIENTS or identifier in WHOLE_SCAN_TEST_SERIES_UIDS
