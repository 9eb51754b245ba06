"""The child side of process isolation (see conveyor.worker.processes): what runs inside a
task's process, and the encoding of errors that cross the pipe in either direction.

The child ignores SIGINT, and any SIGTERM that its worker did not announce with SIGUSR1: Ctrl-C
or a service manager signal the whole process group, and it is the worker that decides when its
jobs stop. SIGUSR1 makes ``ctx.cancelled`` true; the SIGTERM after it raises SystemExit so that
``finally`` blocks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import math
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from conveyor import payload
from conveyor.errors import CPULimitExceeded, LeaseLost
from conveyor.worker.context import JobContext


@dataclass(frozen=True)
class ChildSpec:
    """What the child needs to run one job (pickled to it by multiprocessing)."""

    task: str
    module: str
    qualname: str
    args: list[Any]
    kwargs: dict[str, Any]
    context: dict[str, Any] | None
    memory_limit_mb: int | None
    env: dict[str, str]
    cpu_limit_s: int | None = None
    #: Whether the arguments are rebuilt from their JSON (dataclasses, models: see
    #: conveyor.typecheck); the child does it, from the function it imported.
    rebuild: bool = False


# --- errors across the pipe -------------------------------------------------------------------


def encode_error(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    try:
        blob: bytes | None = pickle.dumps(exc)
    except Exception:
        blob = None
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return blob, name, str(exc), "".join(traceback.format_exception(exc))


def decode_error(blob: bytes | None, name: str, message: str, text: str) -> Exception:
    exc: object = None
    if blob is not None:
        # Written by our own child, running our own code: as trusted as the worker itself.
        with contextlib.suppress(Exception):
            exc = pickle.loads(blob)  # noqa: S301
    if not isinstance(exc, Exception):
        # Unpicklable, or SystemExit & co., which must not unwind the worker.
        exc = RuntimeError(f"{name}: {message}" if message else name)
    exc.add_note(f"In the task's process:\n{text.rstrip()}")
    return exc


# --- the child side ---------------------------------------------------------------------------

_stop_requested = False


class ChildContext(JobContext):
    """The job context inside the child: progress and checkpoints go through the worker."""

    def __init__(self, fields: dict[str, Any], conn: Connection) -> None:
        # No JobContext.__init__: there is no backend here, only the pipe to the worker.
        self.job_id = fields["job_id"]
        self.task = fields["task"]
        self.queue = fields["queue"]
        self.attempt = fields["attempt"]
        self.max_attempts = fields["max_attempts"]
        self.worker_id = fields["worker_id"]
        self.last_checkpoint = fields["last_checkpoint"]
        self.saved_checkpoint_json = None
        self._cancelled = False
        self._lost = False
        self._conn = conn

    @property
    def cancelled(self) -> bool:
        """True once the worker asked this process to stop (cancel, shutdown, lost lease)."""
        return _stop_requested

    def progress(self, value: float | str | dict[str, Any]) -> None:
        payload.dumps(value, "progress")  # a bad value fails here, in the task
        self._call("progress", value)

    def checkpoint(self, state: Any) -> None:
        encoded = payload.dumps(state, "checkpoint")
        self._call("checkpoint", state)
        self.saved_checkpoint_json = encoded

    def _load_escalation(self, _: Any) -> dict[str, Any] | None:
        escalation: dict[str, Any] | None = self._call("_load_escalation", None)
        return escalation

    def _load_parents(self, _: Any) -> dict[int, tuple[str, Any]]:
        parents: dict[int, tuple[str, Any]] = self._call("_load_parents", None)
        return parents

    def _call(self, method: str, value: Any) -> Any:
        if self._lost:
            raise LeaseLost(f"job {self.job_id}: this worker no longer owns the run")
        self._conn.send(("call", method, value))
        status, reply = self._conn.recv()
        if status == "raise":
            exc = decode_error(*reply)
            self._lost = isinstance(exc, LeaseLost)
            raise exc
        return reply


def _on_stop_request(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def _on_sigterm(signum: int, frame: object) -> None:
    # Only a SIGTERM that follows the worker's SIGUSR1 ends the job; one sent to the whole
    # process group (Ctrl-C's twin from a service manager) is the worker's to act on.
    if _stop_requested:
        raise SystemExit(128 + signum)


def _watch_parent() -> None:
    """Die with the worker (even a SIGKILLed one): an orphan would run on unsupervised.

    The fork server keeps a pipe from the worker open in each child, and the kernel signals its
    end of file (O_ASYNC: SIGIO). No watcher thread: its stack and malloc arena would count
    against the memory limit.
    """
    import fcntl

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return
    if sys.platform.startswith("linux"):
        # SIGIO's default action ends the process in the kernel, even inside a C loop.
        signal.signal(signal.SIGIO, signal.SIG_DFL)
    else:
        signal.signal(signal.SIGIO, lambda signum, frame: os._exit(70))
    fcntl.fcntl(sentinel, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(sentinel, fcntl.F_SETFL, fcntl.fcntl(sentinel, fcntl.F_GETFL) | os.O_ASYNC)
    if wait([sentinel], 0):  # the worker died before the signal was armed
        os._exit(70)


def _limit_memory(megabytes: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = megabytes * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def cpu_limit_message(task: str, seconds: int) -> str:
    return f"CPU time limit exceeded ({seconds} s): task {task} may use {seconds} s of CPU time"


def _limit_cpu(task: str, seconds: int) -> None:
    """``RLIMIT_CPU``: at ``seconds`` of CPU time from now the kernel sends SIGXCPU, which
    raises CPULimitExceeded in the task; one second later (code deaf to signals, such as a long
    C call, or a task that swallowed the error) it sends SIGKILL."""
    import resource

    def on_limit(signum: int, frame: object) -> None:
        raise CPULimitExceeded(cpu_limit_message(task, seconds) + " (RLIMIT_CPU)")

    # The fork server's child has already spent a little CPU time: the task gets all of its own.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
        hard = min(soft + 1, hard)
    else:
        hard = soft + 1
    signal.signal(signal.SIGXCPU, on_limit)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    from conveyor.task import Task

    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    # ``@app.task`` leaves the Task at the function's name; the function is its ``fn``.
    fn: Callable[..., Any] = target.fn if isinstance(target, Task) else target
    return fn


def _rebuilt(
    spec: ChildSpec, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments rebuilt as in the worker (``executor.rebuilt_arguments``)."""
    from conveyor.errors import ArgumentsMismatch
    from conveyor.task import NonRetryable
    from conveyor.typecheck import compile_arguments

    signature = inspect.signature(fn)
    if spec.context is not None:  # the job context is no argument of the job
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    types = compile_arguments(spec.task, fn, signature)
    try:
        return (args, kwargs) if types is None else types.decode(args, kwargs)
    except ArgumentsMismatch as exc:
        raise NonRetryable(str(exc)) from None


def child_main(conn: Connection, spec: ChildSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _on_stop_request)
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.clear()
    os.environ.update(spec.env)
    _watch_parent()
    message: tuple[Any, ...]
    try:
        fn = _resolve(spec.module, spec.qualname)
        args, kwargs = list(spec.args), spec.kwargs
        if spec.rebuild:
            args, kwargs = _rebuilt(spec, fn, args, kwargs)
        if spec.memory_limit_mb is not None:
            _limit_memory(spec.memory_limit_mb)
        if spec.cpu_limit_s is not None:
            _limit_cpu(spec.task, spec.cpu_limit_s)
        if spec.context is not None:
            args.insert(0, ChildContext(spec.context, conn))
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        # Checked here, where the value still is what the task returned: one that cannot
        # cross the pipe (a generator, a lock) is not JSON either, and fails the same way.
        payload.encode_result(result, spec.task)
        message = ("result", result)
    except BaseException as exc:
        if isinstance(exc, MemoryError) and spec.memory_limit_mb is not None:
            exc = MemoryError(
                f"memory limit exceeded: task {spec.task} may use {spec.memory_limit_mb} MB "
                "of address space (RLIMIT_AS)"
            ).with_traceback(exc.__traceback__)
        message = ("error", *encode_error(exc))
    if _stop_requested:
        return  # the worker has already settled this job
    try:
        conn.send(message)
    except Exception as exc:  # e.g. a result that cannot be pickled
        conn.send(("error", *encode_error(TypeError(f"cannot send the result back: {exc}"))))
