"""``lungai weights``: list, fetch, verify, export and import model weights. Thin over :mod:`lungai.weights`."""

from __future__ import annotations

from pathlib import Path

import click

from lungai.errors import WeightsError
from lungai.weights.manifest import Manifest, read_manifest
from lungai.weights.resolver import BUNDLED_LIMIT_BYTES, bundled_size, check, resolve, weights_dir


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _names(manifest: Manifest, names: tuple[str, ...], every: bool) -> list[str]:
    """The models a command acts on: the given names, or all with ``--all``."""
    if every == bool(names):
        raise click.UsageError("give model names or --all (not both)")
    unknown = [name for name in names if name not in manifest.models]
    if unknown:
        known = ", ".join(manifest.models) or "none"
        raise click.BadParameter(f"unknown model {', '.join(unknown)}; models in the manifest: {known}",
                                 param_hint="NAME")
    return list(manifest.models) if every else list(dict.fromkeys(names))


@click.group()
def weights() -> None:
    """Model weights: where they are, and moving them to machines without network.

    Weights are looked for in LUNGAI_WEIGHTS_DIR, then in the package, then in the Hugging
    Face cache, and downloaded at a pinned revision otherwise; each file is checked against
    the sha256 in the manifest before use.
    """


@weights.command("list")
def list_() -> None:
    """Show each model with where it is found, its size and whether it verifies (no network)."""
    manifest = read_manifest()
    if not manifest.models:
        click.echo("No models in the weights manifest (none shipped yet).")
    else:
        click.echo(f"{'name':<18} {'source':<12} {'size':>9}  {'verified':<8} revision")
    for name in manifest.models:
        status = check(name, manifest)
        source = status.source.value if status.source else "missing"
        verified = "yes" if status.verified else "no" if status.source is None else "FAILED"
        click.echo(f"{name:<18} {source:<12} {_megabytes(status.entry.size):>9}  {verified:<8} "
                   f"{status.entry.revision_label}")
        if status.problem:
            click.echo(f"  {status.problem}")
    click.echo(f"Bundled weights: {_megabytes(bundled_size(manifest))} (limit {_megabytes(BUNDLED_LIMIT_BYTES)})")
    click.echo(_user_folder_line())


def _user_folder_line() -> str:
    """Where fetched and imported weights live: the folder when it exists, else where it would be made."""
    folder = weights_dir()
    if folder.is_dir():
        return f"User weights folder: {folder}"
    return f"User weights folder: none yet (`lungai weights import` creates {folder})"


@weights.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "every", is_flag=True, help="Every model in the manifest.")
@click.option("--force", is_flag=True, help="Download again even if a local copy exists.")
def fetch(names: tuple[str, ...], every: bool, force: bool) -> None:
    """Make models available locally, downloading them from the Hugging Face Hub if needed."""
    manifest = read_manifest()
    for name in _names(manifest, names, every):
        resolved = resolve(name, manifest, force_download=force)
        click.echo(f"{name}: {resolved.source.value} ({resolved.folder})")


@weights.command()
@click.argument("names", nargs=-1, metavar="[NAME...]")
def verify(names: tuple[str, ...]) -> None:
    """Check installed weights against the manifest's checksums (all models by default, no network).

    Exits with code 10 if a model is missing or fails verification.
    """
    manifest = read_manifest()
    failures = []
    for name in _names(manifest, names, every=not names):
        status = check(name, manifest)
        if status.verified and status.source is not None:
            click.echo(f"{name}: ok ({status.source.value})")
        else:
            reason = status.problem or "not installed"
            click.echo(f"{name}: {reason}")
            failures.append(f"{name} ({'failed verification' if status.problem else 'missing'})")
    if failures:
        raise WeightsError(f"{len(failures)} of {len(manifest.models)} models are not usable: {', '.join(failures)}",
                           "run `lungai weights fetch --all`, or `lungai weights import` a bundle where offline")
    click.echo(f"{len(manifest.models)} models verified.")


@weights.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "every", is_flag=True, help="Every model in the manifest.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The bundle zip to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
def export(names: tuple[str, ...], every: bool, output: Path, overwrite: bool) -> None:
    """Write models into a zip for a machine without network (fetching them first if needed)."""
    from lungai.weights.bundle import export_bundle

    manifest = read_manifest()
    path = export_bundle(_names(manifest, names, every), output, manifest, overwrite=overwrite)
    click.echo(f"Wrote {path}; on the other machine run: lungai weights import {path.name}")


@weights.command("import")
@click.argument("bundle", type=click.Path(path_type=Path))
def import_(bundle: Path) -> None:
    """Verify a bundle made by `lungai weights export` and install its models into the weights folder."""
    from lungai.weights.bundle import import_bundle

    names = import_bundle(bundle, read_manifest())
    click.echo(f"Imported {', '.join(names)} into {weights_dir()}")
