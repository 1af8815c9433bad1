"""staged_output: outputs appear complete or not at all, and existing outputs are safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungai.errors import OutputExistsError
from lungai.io.output import check_output_target, staged_output


class StageFailed(Exception):
    """Stands for any error in a pipeline stage."""


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def make_existing(final: Path) -> None:
    final.mkdir(parents=True)
    (final / "findings.json").write_text("old")


def test_success_moves_into_place(tmp_path: Path) -> None:
    final = tmp_path / "out" / "scan1"  # the parent is created too, but only on success
    with staged_output(final, overwrite=False) as staging:
        assert staging.parent == tmp_path  # the nearest existing ancestor
        assert not final.parent.exists()
        assert staging.name.startswith(".lungai-tmp-")
        assert not final.exists()
        (staging / "findings.json").write_text("new")
    assert (final / "findings.json").read_text() == "new"
    assert entries(final.parent) == ["scan1"]
    assert entries(tmp_path) == ["out"]


@pytest.mark.parametrize("error", [StageFailed("stage failed"), KeyboardInterrupt()],
                         ids=["exception", "interrupt"])
def test_failure_leaves_nothing_behind(error: BaseException, tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    with pytest.raises(type(error)):
        with staged_output(final, overwrite=False) as staging:
            (staging / "scan.seg.nrrd").write_text("half written")
            raise error
    assert entries(tmp_path) == []


def test_existing_output_refused_before_anything_runs(tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    make_existing(final)
    with pytest.raises(OutputExistsError) as error:
        with staged_output(final, overwrite=False):
            pytest.fail("the block must not run")
    assert error.value.exit_code == 8
    assert "--overwrite" in error.value.message
    assert (final / "findings.json").read_text() == "old"
    assert entries(tmp_path) == ["scan1"]


def test_overwrite_replaces_only_at_the_end(tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    make_existing(final)
    (final / "stale.csv").write_text("old")
    with staged_output(final, overwrite=True) as staging:
        assert (final / "findings.json").read_text() == "old"
        (staging / "findings.json").write_text("new")
    assert entries(final) == ["findings.json"]
    assert (final / "findings.json").read_text() == "new"
    assert entries(tmp_path) == ["scan1"]


@pytest.mark.parametrize("error", [StageFailed("stage failed"), KeyboardInterrupt()],
                         ids=["exception", "interrupt"])
def test_overwrite_keeps_existing_output_when_a_step_fails(error: BaseException,
                                                           tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    make_existing(final)
    with pytest.raises(type(error)):
        with staged_output(final, overwrite=True) as staging:
            (staging / "findings.json").write_text("new")
            raise error
    assert entries(final) == ["findings.json"]
    assert (final / "findings.json").read_text() == "old"
    assert entries(tmp_path) == ["scan1"]


def test_output_created_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    with pytest.raises(OutputExistsError):
        with staged_output(final, overwrite=False) as staging:
            (staging / "findings.json").write_text("new")
            make_existing(final)  # e.g. another run writing to the same folder
    assert (final / "findings.json").read_text() == "old"
    assert entries(tmp_path) == ["scan1"]


def test_a_file_in_the_way_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    final.write_text("not a folder")
    with pytest.raises(OutputExistsError, match="not a folder"):
        with staged_output(final, overwrite=True):
            pytest.fail("the block must not run")
    assert final.read_text() == "not a folder"


def test_check_output_target_up_front(tmp_path: Path) -> None:
    final = tmp_path / "scan1"
    check_output_target(final, overwrite=False)
    make_existing(final)
    check_output_target(final, overwrite=True)
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output_target(final, overwrite=False)


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    from lungai.errors import OutputNotWritableError

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputNotWritableError, match="cannot write"):
        with staged_output(blocker / "scan1"):
            pass
    assert entries(tmp_path) == ["a_file"]
