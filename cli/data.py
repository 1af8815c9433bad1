"""``lungai data simulate-emphysema``: make a simulated weak-label emphysema dataset."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def data() -> None:
    """Make datasets (simulated emphysema)."""


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
