"""``python -m evals`` runs the CLI."""

from .cli import app

app()
