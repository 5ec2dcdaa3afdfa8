"""The README's commands run as written after the set-up (the fast ones; see SLOW and NEEDS)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
LATENTSR = REPOSITORY / ".venv" / "bin" / "latentsr"
#: Commands not run here: training and adaptation take minutes to hours, the set-up and the test
#: suite are what runs this test, and the full demo is covered by test_demo.py.
SLOW = ("latentsr train ", "latentsr adapt ", "brain_ae.pt", "scripts/setup.sh", "pytest",
        "latentsr demo --out /tmp/latentsr-demo\n")
#: Commands that need what a clone does not have: the real data beside the repository.
NEEDS = ("../shared/data",)


def readme_commands(text: str) -> list[str]:
    """Every ``.venv/bin/latentsr`` command in the bash blocks of ``text``, continuation lines joined and
    trailing comments removed, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if ".venv/bin/latentsr" in line and not line.startswith("#"):
                commands.append(line.split(" #", 1)[0].strip() + "\n")
    return commands


def fast_commands() -> list[str]:
    return [c for c in readme_commands(newcomer_sections(README.read_text())) if not any(s in c for s in SLOW + NEEDS)]


def newcomer_sections(text: str) -> str:
    """The README from "Two commands" up to the next heading after "Command line" (the sections after
    it hold commands for clusters and other set-ups)."""
    start = text.index("## Two commands")
    after = re.search(r"\n#{2,6} ", text[text.index("## Command line") + 1:])
    return text[start:text.index("## Command line") + 1 + after.start() if after else len(text)]


def test_readme_commands_are_found_and_use_the_venv():
    commands = readme_commands(newcomer_sections(README.read_text()))
    assert len(commands) >= 10 and len(fast_commands()) >= 8
    text = newcomer_sections(README.read_text())
    # No bare `latentsr` at the start of a command line in a bash block: it is not on the PATH after
    # the set-up (only .venv/bin/latentsr is).
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            assert not re.match(r"\s*latentsr\s", line), line
    # No output folder inside the repository, no results folder a clone does not have.
    assert not re.search(r"--out (latentsr-demo|out/|eval/)", text)
    assert "out/quality" not in README.read_text()


@pytest.mark.skipif(not LATENTSR.exists(), reason="no .venv/bin/latentsr (run scripts/setup.sh)")
def test_fast_readme_commands_run_as_written(tmp_path):
    """Each fast command, in order, with /tmp/ pointing at a fresh folder; all must exit 0."""
    for command in fast_commands():
        command = command.replace("/tmp/", f"{tmp_path}/")
        args = shlex.split(command)
        result = subprocess.run(args, cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    # What the commands should have made.
    assert (tmp_path / "latentsr-demo" / "phantom_input.nii").exists()
    assert (tmp_path / "latentsr-demo" / "phantom_x2.nrrd").exists()
    assert any((tmp_path / "latentsr-out").iterdir())
    assert (tmp_path / "latentsr-eval" / "comparison.png").exists()
    assert (tmp_path / "latentsr-demo" / "ae_smoothed.pt").exists()


def test_the_slow_and_data_commands_are_the_only_ones_left_out():
    commands = readme_commands(newcomer_sections(README.read_text()))
    left_out = [c for c in commands if c not in fast_commands()]
    assert all(any(s in c for s in SLOW + NEEDS) for c in left_out)
    assert any("train ae" in c for c in left_out) and any("demo --out /tmp/latentsr-demo" in c for c in left_out)
    assert any("latentsr evaluate" in c for c in fast_commands())
