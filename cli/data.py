"""``lungai data simulate-emphysema`` and ``simulate-follow-up``: make simulated datasets."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def data() -> None:
    """Make datasets (simulated emphysema, simulated follow-up pairs)."""


@data.command("simulate-emphysema")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Dataset folder to create: volumes/*.nrrd and labels.csv.")
@click.option("--n", "count", type=click.IntRange(1), default=300, show_default=True, help="Number of volumes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--source", "sources", type=click.Path(path_type=Path, exists=True), multiple=True,
              help="Real chest CT to simulate in (repeat). Default: backgrounds/elastix_chest.nrrd and "
                   "lung_pet_ct_dx/A0001/dicom.zip under --data-root. Never LIDC-IDRI-0001..0003.")
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=Path("../shared/data"),
              show_default=True, help="Folder the default sources are in.")
@click.option("--label-threshold", type=float, default=2.0, show_default=True,
              help="Emphysema extent (percentage points of LAA-950 added) from which a volume is labelled 1.")
def simulate_emphysema(out: Path, count: int, seed: int, sources: tuple[Path, ...], data_root: Path,
                       label_threshold: float) -> None:
    """Simulate centrilobular, panlobular and paraseptal emphysema in real chest CT.

    Writes OUT/volumes/sim_NNNN.nrrd and OUT/labels.csv (path, label, patient_id and what was
    simulated per volume: pattern, extent, severity, LAA-950, noise, kernel, grid, flip).
    """
    from lungai.data.emphysema_simset import DEFAULT_SOURCES, SimulationSetConfig, make_simulation_set

    chosen = sources or tuple(data_root / name for name in DEFAULT_SOURCES)
    missing = [str(path) for path in chosen if not path.exists()]
    if missing:
        raise click.BadParameter(f"source scan(s) not found: {', '.join(missing)}", param_hint="--source/--data-root")
    csv_path = make_simulation_set(SimulationSetConfig(sources=chosen, out=out, n=count, seed=seed,
                                                       label_threshold_pp=label_threshold))
    click.echo(f"wrote {count} volumes and {csv_path}")


@data.command("simulate-follow-up")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Pairs folder to create: pairs.csv and <pair_id>/{prior.nrrd,current.nrrd,truth.json}.")
@click.option("--tune", type=click.IntRange(0), default=4, show_default=True,
              help="Tune pairs (training backgrounds, training-split VOIs).")
@click.option("--test", type=click.IntRange(0), default=10, show_default=True,
              help="Test pairs (LIDC-IDRI-0001 and 0002, test-split VOIs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path, file_okay=False), default=Path("../shared/data"),
              show_default=True, help="The shared data folder (lidc_scans/, lidc_vois/, backgrounds/, "
                   "lung_pet_ct_dx/).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out folder.")
def simulate_follow_up(out: Path, tune: int, test: int, seed: int, data_root: Path, overwrite: bool) -> None:
    """Simulate prior/current scan pairs with known transform, growth, new and resolved nodules.

    The prior is a real scan with real LIDC nodules pasted in; the current is the same anatomy
    moved (rigid + affine + a breathing-like deformation), resampled to another slice spacing,
    with more noise, its nodules grown or shrunk by known factors, some gone and some new.
    See docs/follow-up.md (Test data).
    """
    from lungai.data.follow_up_sim import FollowUpSetConfig, make_pairs
    from lungai.io.output import check_output_target

    if tune + test == 0:
        raise click.BadParameter("ask for at least one pair", param_hint="--tune/--test")
    if not (data_root / "lidc_vois").is_dir():
        raise click.BadParameter(f"{data_root} has no lidc_vois/: pass the shared data folder",
                                 param_hint="--data-root")
    check_output_target(out, overwrite)
    csv_path = make_pairs(FollowUpSetConfig(data_root=data_root, out=out, tune=tune, test=test, seed=seed,
                                            overwrite=overwrite))
    click.echo(f"wrote {tune} tune and {test} test pairs and {csv_path}")
