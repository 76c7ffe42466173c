"""``python -m trainer`` (and ``torchrun -m trainer``) runs the CLI."""

from .cli import app

app()
