"""placeholder"""
import click


@click.command("evaluate")
def evaluate() -> None:
    """Evaluate."""
