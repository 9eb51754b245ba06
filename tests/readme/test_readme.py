"""The README runs as written: its examples are tests, so the front door cannot rot.

The convention, for whoever writes the README:

- Every ```python block compiles. A block is a fragment (it may use names defined elsewhere,
  and ``await`` at top level, as code inside an ``async def`` would) unless its first line is
  ``# FILE.py``: then it is a whole file, compiled as one (no top-level ``await``).
- A section (from its heading to the next heading of any level) opts in to being *run* with an
  HTML comment ``<!-- readme-test: NAME -->``, usually right under its heading. The sections
  carrying the same NAME run one after the other, in README order, in one fresh temporary
  folder:

  - a block whose first line is ``# FILE`` (``# tasks.py``, ``# conveyor.toml``, any
    language) is written to FILE;
  - each line of a ```sh block is run in that folder by /bin/sh and must exit 0 (a line
    ending in ``\\`` continues on the next; ``#`` starts a comment, as in the shell). The
    virtualenv running the tests comes first on PATH, so ``python`` and ``conveyor`` are this
    checkout's; CONVEYOR_* variables are cleared;
  - a ```python block without a file name is run as a script;
  - any other block is an error: name it as a file, or move it out of the section.

- A whole file (``# FILE.py``) outside a run section is an error: a complete program must run.

What a run must leave behind is checked per NAME below (``CHECKS``); the quickstart's is that
every job in its jobs.db succeeded, under its module's task names.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*([\w-]+)")
FILE_NAME = re.compile(r"#\s*([\w./-]+\.\w+)\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
#: Seconds one command may take: a burst worker on a loaded 2-core machine included.
COMMAND_TIMEOUT = 120


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where its first line of code is, 1-based
    runs: str | None  # the NAME of the run section it is in

    @property
    def file_name(self) -> str | None:
        first = self.text.splitlines()[0] if self.text else ""
        found = FILE_NAME.fullmatch(first.strip())
        return found[1] if found else None

    def __str__(self) -> str:
        return f"README.md:{self.line}"


@dataclass
class Section:
    runs: str | None = None
    blocks: list[Block] = field(default_factory=list)


def parse(text: str) -> list[Block]:
    """Every fenced block, with the run NAME of its section (None when not run)."""
    sections = [Section()]
    fence: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is not None:
            if line.strip() == "```":
                lang, start, body = fence
                sections[-1].blocks.append(Block(lang, "\n".join(body) + "\n", start, None))
                fence = None
            else:
                fence[2].append(line)
        elif opening:
            fence = (opening[1], number + 1, [])
        elif line.startswith("#"):
            sections.append(Section())
        elif marker := MARKER.search(line):
            sections[-1].runs = marker[1]
    assert fence is None, "README.md ends inside a code block"
    blocks = []
    for section in sections:
        for block in section.blocks:
            block.runs = section.runs
            blocks.append(block)
    return blocks


BLOCKS = parse(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUNS = sorted({b.runs for b in BLOCKS if b.runs is not None})


def test_the_quickstart_is_run() -> None:
    assert "quickstart" in RUNS


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_every_python_block_compiles(block: Block) -> None:
    # A real compile, not ast.parse: only the compiler refuses an `await` outside a function.
    flags = 0 if block.file_name else ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        compile(block.text, str(block), "exec", flags=flags, dont_inherit=True)
    except SyntaxError as exc:
        kind = "file" if block.file_name else "fragment"
        pytest.fail(f"the {kind} at {block} does not compile: {exc.msg}, its line {exc.lineno}")


def test_every_whole_program_is_run() -> None:
    idle = [f"{b} ({b.file_name})" for b in PYTHON if b.file_name and b.runs is None]
    assert not idle, (
        f"whole files outside a run section: {idle}; add <!-- readme-test: NAME --> to their "
        "section (see tests/readme/test_readme.py)"
    )


def run_section(name: str, folder: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "conveyor").exists(), f"no conveyor in {bin_dir}: pip install -e . there"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for block in (b for b in BLOCKS if b.runs == name):
        if block.file_name is not None:
            (folder / block.file_name).parent.mkdir(parents=True, exist_ok=True)
            (folder / block.file_name).write_text(block.text, encoding="utf-8")
        elif block.lang == "sh":
            for command in commands(block.text):
                run(command, folder, env, block)
        elif block.lang == "python":
            run(f"{sys.executable} -", folder, env, block, stdin=block.text)
        else:
            pytest.fail(
                f"{block}: a {block.lang or 'plain'} block in run section {name!r} "
                "is neither a file (# NAME first) nor sh"
            )


def commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def run(command: str, folder: Path, env: dict[str, str], block: Block, stdin: str = "") -> None:
    done = subprocess.run(
        command,
        shell=True,
        cwd=folder,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block}: `{command}` exited {done.returncode}\n"
        f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )


def quickstart_ran(folder: Path) -> None:
    assert not (folder / "conveyor.db").exists(), "a command used the default database"
    with Conveyor(f"sqlite:///{folder / 'jobs.db'}") as app:
        jobs = app.list_jobs()
    assert len(jobs) >= 5
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}, [(j.id, j.state) for j in jobs]
    assert {job.task for job in jobs} == {"tasks.add", "tasks.shout"}
    assert {job.result for job in jobs} >= {3, "HELLO"}


def hooks_ran(folder: Path) -> None:
    with Conveyor(f"sqlite:///{folder / 'hooks.db'}") as app:
        states = sorted(job.state for job in app.list_jobs())
    assert states == [JobState.DEAD, JobState.SUCCEEDED]


def periodic_ran(folder: Path) -> None:
    with Conveyor(f"sqlite:///{folder / 'periodic.db'}") as app:
        jobs = app.list_jobs(task="periodic_example.heartbeat")
        [beat] = [s for s in app.backend.schedule_states() if s.name == "heartbeat"]
    assert len(jobs) >= 2  # a tick a second for 4 seconds
    assert len({job.idempotency_key for job in jobs}) == len(jobs)
    assert not beat.paused  # paused, then resumed


def workflows_ran(folder: Path) -> None:
    with Conveyor(f"sqlite:///{folder / 'pipeline.db'}") as app:
        jobs = {job.id: job for job in app.list_jobs()}
        nightly = app.workflow("nightly")
    assert nightly.state == "succeeded"
    assert [j.state for j in nightly.jobs[:-1]] == [JobState.SUCCEEDED] * 4
    assert nightly.jobs[-1].dead_reason == "not needed: every parent succeeded"
    assert nightly.jobs[-2].result == 6
    # The job of `conveyor enqueue ... --depends-on 1 --depends-on 2` ran after both.
    last = max(jobs)
    assert (jobs[last].task, jobs[last].state, jobs[last].result) == (
        "pipeline.total",
        JobState.SUCCEEDED,
        jobs[1].result + jobs[2].result,
    )


def typed_ran(folder: Path) -> None:
    with Conveyor(f"sqlite:///{folder / 'jobs.db'}") as app:
        jobs = app.list_jobs()
    assert sorted(job.result for job in jobs) == [1.5, 2.5]  # the mismatched third never written


def moving_ran(folder: Path) -> None:
    for name in ("restored.db", "copied.db", "new.db", "moved.db"):
        with Conveyor(f"sqlite:///{folder / name}") as app:
            jobs = app.list_jobs()
            gates = app.queue_gates()
        assert sorted(job.id for job in jobs) == [1, 2, 3], name
        assert {job.task for job in jobs} == {"greet"}, name
        assert [gate.queue for gate in gates] == ["default"], name


#: What each run must leave in its folder, beyond every command exiting 0.
CHECKS: dict[str, Callable[[Path], None]] = {
    "quickstart": quickstart_ran,
    "hooks": hooks_ran,
    "periodic": periodic_ran,
    "workflows": workflows_ran,
    "typed": typed_ran,
    "moving": moving_ran,
}


@pytest.mark.parametrize("name", RUNS)
def test_section_runs_as_written(name: str, tmp_path: Path) -> None:
    run_section(name, tmp_path)
    if name in CHECKS:
        CHECKS[name](tmp_path)
