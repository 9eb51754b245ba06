"""Workers on several "hosts": each in a network namespace of its own, reaching a private
PostgreSQL cluster over a veth link of its own. One host is cut off (its link brought down)
with a job in flight: the job runs on another host once its lease expires, and when the cut-off
host comes back, its late writes change nothing. And a statement sent into a cut fails within
seconds on Conveyor's default TCP settings, instead of waiting out TCP's retransmissions.

Needs root (or CAP_NET_ADMIN) for ``ip netns``; skipped, saying why, where that is refused.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import JobState
from tests.postgres.workers import PgWorkers, pg_world, private_cluster, wait_for
from tests.worker.harness import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.slow


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    """A network namespace linked to the root namespace by a veth pair on a /30 of its own."""

    namespace: str
    link: str  # the root side of the pair: bringing it down cuts the host off
    server_address: str  # the root side's address: where the host reaches the server
    address: str

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")


def _netns_refusal() -> str | None:
    probe = f"cvprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except FileNotFoundError:
        return "the ip command is not installed"
    except subprocess.CalledProcessError as exc:
        return f"ip netns is not permitted here: {exc.stderr.strip()}"
    _ip("netns", "delete", probe)
    return None


def _sweep_orphans() -> None:
    """Delete the namespaces of test processes that died without cleaning up (with each, its
    veth pair goes)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in listing.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) == 4 and parts[0] == "conveyor" and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                with contextlib.suppress(subprocess.CalledProcessError):
                    _ip("netns", "delete", name)
            except PermissionError:
                pass


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    _sweep_orphans()
    tag = secrets.token_hex(2)
    subnet = random.randint(16, 250)
    made: list[Host] = []
    try:
        for n in range(count):
            name = f"cv{tag}h{n}"  # interface names: 15 bytes at most
            host = Host(
                # The namespace names its creator, so that a later run can sweep it up.
                namespace=f"conveyor-{os.getpid()}-{tag}-h{n}",
                link=f"{name}r",
                server_address=f"10.213.{subnet}.{4 * n + 1}",
                address=f"10.213.{subnet}.{4 * n + 2}",
            )
            made.append(host)
            _ip("netns", "add", host.namespace)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", f"{name}n")
            _ip("link", "set", f"{name}n", "netns", host.namespace)
            _ip("addr", "add", f"{host.server_address}/30", "dev", host.link)
            _ip("link", "set", host.link, "up")
            inside = ["netns", "exec", host.namespace, "ip"]
            _ip(*inside, "addr", "add", f"{host.address}/30", "dev", f"{name}n")
            _ip(*inside, "link", "set", f"{name}n", "up")
            _ip(*inside, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("netns", "delete", host.namespace)  # takes its end of the pair, and so both
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("link", "del", host.link)


#: Fast failure detection on the hosts' connections: a statement sent into a cut link fails
#: after 2 s instead of waiting out TCP's retransmissions (about 15 minutes).
_FAST_FAILURE = {
    "tcp_user_timeout": "2000",
    "keepalives": "1",
    "keepalives_idle": "1",
    "keepalives_interval": "1",
    "keepalives_count": "2",
}


def test_a_host_cut_off_mid_job_loses_it_to_another_and_cannot_overwrite_it(
    tmp_path: Path,
) -> None:
    refusal = _netns_refusal()
    if refusal is not None:
        pytest.skip(refusal)
    settings = {"lease": 4.0, "heartbeat": 0.5, "sweep_interval": 0.3}
    with hosts(2) as (host_a, host_b):
        listen = ",".join(["127.0.0.1", host_a.server_address, host_b.server_address])
        hba = [f"host all all {h.address}/32 trust" for h in (host_a, host_b)]
        with (
            private_cluster(listen=listen, hba=hba) as cluster,
            pg_world(tmp_path, cluster.url(), **settings) as world,
        ):
            workers = PgWorkers(world)
            try:

                def start(name: str, host: Host) -> WorkerProcess:
                    url = cluster.url(host.server_address, **_FAST_FAILURE)
                    return workers.start(
                        name, concurrency=4, env={"CONVEYOR_URL": url}, prefix=host.exec_prefix
                    )

                worker_a = start("A", host_a)
                task = world.app.get_task("pg.first_run_hangs")
                job_id = task.enqueue(8.0).id  # attempt 1 takes 8 s; later ones are quick
                wait_for(lambda: world.effects("start"), "host A to start the job")
                worker_b = start("B", host_b)

                host_a.cut()
                # The lease runs out under host A; host B rescues the job and runs it.
                finished = wait_for(
                    lambda: (job := world.app.get_job(job_id)).state is JobState.SUCCEEDED and job,
                    "host B to finish the job",
                    on_timeout=workers.logs,
                )
                assert (finished.attempts, finished.lost_runs) == (2, 1)
                assert finished.result == worker_b.pid

                # Host A's run ends too (its code ran: at least once), and once the link is
                # back, its outcome reaches the server and is refused.
                wait_for(
                    lambda: any(e.attempt == 1 for e in world.effects("done")),
                    "host A's run to end",
                    on_timeout=workers.logs,
                )
                host_a.restore()
                wait_for(
                    lambda: "outcome dropped" in worker_a.log(),
                    "host A's late outcome to be refused",
                    on_timeout=workers.logs,
                )
                after = world.app.get_job(job_id)
                assert (after.state, after.attempts, after.lost_runs, after.result) == (
                    JobState.SUCCEEDED,
                    2,
                    1,
                    worker_b.pid,
                )
                assert after.finished_at == finished.finished_at
                assert after.errors == finished.errors

                for proc in (worker_a, worker_b):
                    assert proc.alive(), proc.log()
                    proc.send(signal.SIGTERM)
                for proc in (worker_a, worker_b):
                    assert proc.wait_exit() == 0
            finally:
                workers.cleanup()


def test_a_statement_sent_into_a_cut_fails_within_seconds_on_default_settings(
    tmp_path: Path,
) -> None:
    """TCP alone would keep retransmitting it for about 15 minutes; Conveyor's keepalives and
    user timeout (connection.TCP_DEFAULTS) end it in half a minute, and once the link is back
    the pool connects again."""
    refusal = _netns_refusal()
    if refusal is not None:
        pytest.skip(refusal)
    with hosts(1) as (host,):
        listen = f"127.0.0.1,{host.server_address}"
        hba = [f"host all all {host.address}/32 trust"]
        with private_cluster(listen=listen, hba=hba) as cluster:
            # No TCP parameters in the URL: the defaults are what is tested.
            url = f"postgresql://postgres@{host.server_address}:{cluster.port}/postgres"
            log = tmp_path / "probe.log"
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
            argv = [sys.executable, "-m", "tests.postgres.cut_probe", url, "cut_probe"]
            with log.open("w") as stderr:
                probe = subprocess.Popen(
                    [*host.exec_prefix, *argv],
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            # The probe's lines go through a queue so that a wait for one can time out.
            answers: queue.Queue[str] = queue.Queue()

            def relay() -> None:
                for line in probe.stdout or ():
                    answers.put(line.strip())

            threading.Thread(target=relay, daemon=True).start()

            def answer(within: float) -> str:
                try:
                    return answers.get(timeout=within)
                except queue.Empty:
                    raise AssertionError(
                        f"no answer from the probe in {within:g}s:\n{log.read_text()}"
                    ) from None

            def ask(within: float) -> str:
                assert probe.stdin is not None
                probe.stdin.write("call\n")
                probe.stdin.flush()
                return answer(within)

            try:
                assert answer(60) == "ready"
                assert ask(30) == "ok"
                host.cut()
                failed = ask(90)
                assert failed.startswith("BackendUnavailable"), failed
                host.restore()
                wait_for(lambda: ask(30) == "ok", "the probe to reach the server again")
            finally:
                probe.kill()
                probe.wait(30)
