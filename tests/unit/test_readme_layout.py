"""The README's "How it works" diagram names the same rooms as the package tree."""

import re
from pathlib import Path

import leakwatch

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(leakwatch.__file__).resolve().parent
# Not rooms: the schema's migrations and the config template are data.
NOT_ROOMS = {"migrations", "templates", "__pycache__"}


def _diagram() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How it works", 1)[1]
    return section.split("```", 2)[1]


def test_the_diagram_names_every_room_and_no_other() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in NOT_ROOMS}
    named = set(re.findall(r"\b([a-z]+)/", _diagram()))
    assert named == rooms


def test_the_modules_the_diagram_names_exist() -> None:
    for room, module in re.findall(r"\b([a-z]+)/([a-z_]+)\b", _diagram()):
        assert (PACKAGE / room / f"{module}.py").exists(), f"{room}/{module}"
    for module in re.findall(r"\b([a-z]+)\.py\b", _diagram()):
        assert (PACKAGE / f"{module}.py").exists(), module
