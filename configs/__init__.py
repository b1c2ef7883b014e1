"""Reconstruction presets users pick by name (``scene4d reconstruct DATA --preset fast``).

Each ``NAME.json`` here is one preset; ``scene4d presets`` lists them and ``scene4d presets NAME``
prints one in full, to copy, edit and pass as ``--preset my.json``. The format is documented in
:mod:`scene4d.presets`. This package holds data only.
"""

from pathlib import Path

DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """The preset names shipped here, sorted."""
    return sorted(p.stem for p in DIR.glob("*.json"))
