"""Finding a batch's cases: folder trees (files, DICOM series, zips), CSV, globs, ids, --dry-run."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from cli_runner import run_cli
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai.batch.cases import discover
from lungai.errors import CaseListError, InputNotFoundError


@pytest.fixture()
def mixed_tree(tmp_path: Path) -> Path:
    """Scan files in three formats, two patients' DICOM (one study with a larger and a smaller CT
    series, an MR series), a DICOM zip and a file that is no scan."""
    root = tmp_path / "cohort"
    array = box_phantom()
    for folder in ("nrrd", "nifti", "zips"):
        (root / folder).mkdir(parents=True)
    write_image(array, root / "nrrd" / "one.nrrd")
    write_image(array, root / "nifti" / "two.nii.gz")
    write_image(array, root / "three.mha")
    study = "1.2.826.0.1.3680043.8.498.1"
    write_dicom_series(root / "dicom" / "P1" / "big", array, study_uid=study, PatientID="P1",
                       StudyDate="20200101", SeriesNumber=2)
    write_dicom_series(root / "dicom" / "P1" / "small", array[:20], study_uid=study, PatientID="P1",
                       StudyDate="20200101", SeriesNumber=3)
    write_dicom_series(root / "dicom" / "P1" / "mr", array[:10], modality="MR", study_uid=study, PatientID="P1")
    write_dicom_series(root / "dicom" / "P2", array, PatientID="P2", StudyDate="20210101", SeriesNumber=5)
    zipped = tmp_path / "zip_source"
    write_dicom_series(zipped / "dicom", array, PatientID="Z1", StudyDate="20220101", SeriesNumber=1)
    with zipfile.ZipFile(root / "zips" / "dicom.zip", "w") as archive:
        for path in sorted((zipped / "dicom").iterdir()):
            archive.write(path, f"dicom/{path.name}")
    (root / "notes.txt").write_text("not a scan")
    return root


def test_a_mixed_tree_gives_one_case_per_scan_and_study(mixed_tree: Path) -> None:
    found = discover([str(mixed_tree)])
    cases = {case.case_id: case for case in found.cases}
    assert set(cases) == {"one", "two", "three", "P1_20200101_2", "P2_20210101_5", "Z1_20220101_1"}
    assert cases["P1_20200101_2"].path == mixed_tree / "dicom" / "P1" / "big"
    assert cases["P1_20200101_2"].series_uid and cases["P1_20200101_2"].slices == 24
    assert cases["Z1_20220101_1"].path == mixed_tree / "zips" / "dicom.zip" and cases["Z1_20220101_1"].slices == 24
    reasons = " | ".join(why for _, why in found.skipped)
    assert "modality MR" in reasons and "not the study's largest CT series" in reasons


def test_all_series_takes_every_ct_series(mixed_tree: Path) -> None:
    ids = {case.case_id for case in discover([str(mixed_tree)], all_series=True).cases}
    assert {"P1_20200101_2", "P1_20200101_3"} <= ids


def test_csv_and_glob_inputs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_image(box_phantom(), tmp_path / f"{name}.nrrd")
    (tmp_path / "cases.csv").write_text("case_id,path\nfirst case,a.nrrd\nsecond/case,b.nrrd\n")
    from_csv = discover([str(tmp_path / "cases.csv")]).cases
    assert [(case.case_id, case.path) for case in from_csv] == [("first_case", tmp_path / "a.nrrd"),
                                                                ("second_case", tmp_path / "b.nrrd")]
    assert [case.case_id for case in discover([str(tmp_path / "*.nrrd")]).cases] == ["a", "b"]


def test_duplicate_ids_name_both_paths(tmp_path: Path) -> None:
    first, second = tmp_path / "x" / "scan.nrrd", tmp_path / "y" / "scan.nrrd"
    for path in (first, second):
        path.parent.mkdir()
        write_image(box_phantom(), path)
    with pytest.raises(CaseListError) as caught:
        discover([str(tmp_path)])
    assert str(first) in caught.value.message and str(second) in caught.value.message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("content, problem", [("id,file\nx,y\n", "not case_id,path"), ("case_id,path\nx,\n", "line 2")])
def test_a_malformed_csv_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "cases.csv").write_text(content)
    with pytest.raises(CaseListError, match=problem):
        discover([str(tmp_path / "cases.csv")])


def test_missing_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        discover([str(tmp_path / "absent")])
    with pytest.raises(InputNotFoundError, match="matches nothing"):
        discover([str(tmp_path / "*.nrrd")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseListError, match="no scans found"):
        discover([str(tmp_path / "empty")])


def test_dry_run_lists_cases_and_skips_without_running(mixed_tree: Path, tmp_path: Path, capsys) -> None:
    code, stdout, _ = run_cli(["batch", str(mixed_tree), "--dry-run", "-o", str(tmp_path / "out")], capsys)
    assert code == 0
    assert "6 cases:" in stdout and "P2_20210101_5" in stdout and "(24 slices)" in stdout
    assert "skipped 2:" in stdout and "modality MR" in stdout
    assert not (tmp_path / "out").exists()
