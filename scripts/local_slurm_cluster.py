"""A real one-node SLURM cluster on this machine, for testing the batch jobs (needs root, Debian's
`slurm-wlm` and `munge`).

    python scripts/local_slurm_cluster.py start --dir /tmp/slurm     # prints: export SLURM_CONF=...
    python scripts/local_slurm_cluster.py stop --dir /tmp/slurm      # stops the daemons it started, by PID

The configuration, state, spool, logs and PID files all live in --dir; munged is started as the
`munge` user with its socket in that folder.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "scancel")


def missing_requirements() -> str | None:
    """Why this machine cannot run the cluster, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    absent = [b for b in REQUIRED if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if absent:
        return f"missing {', '.join(absent)} (apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class Cluster:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> str:
        return subprocess.run(cmd, env=self.env, check=check, capture_output=True, text=True, timeout=60).stdout

    @property
    def munge_dir(self) -> Path:
        """munged's own folder (outside `root`, whose parents may be closed to the munge user)."""
        return Path((self.root / "munge_dir").read_text().strip())

    def pids(self) -> list[int]:
        out = []
        files = [self.root / "slurmd.pid", self.root / "slurmctld.pid"]
        if (self.root / "munge_dir").exists():
            files.append(self.munge_dir / "munged.pid")
        for path in files:
            try:
                out.append(int(path.read_text().strip()))
            except (FileNotFoundError, ValueError):
                pass
        return out


def write_config(root: Path, munge_socket: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=dlmtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CryptoType=crypto/munge
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'slurmctld.log'}
SlurmdLogFile={root / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=defer_batch
SchedulerType=sched/backfill
MinJobAge=600
FirstJobId={random.randint(100_000, 60_000_000)}
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def start(root: Path, timeout_s: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd; wait until the node is idle. Raises RuntimeError."""
    reason = missing_requirements()
    if reason:
        raise RuntimeError(f"cannot start a SLURM cluster here: {reason}")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    cluster = Cluster(root)
    munge_dir = Path(tempfile.mkdtemp(prefix="dlm-munge-"))
    os.chmod(munge_dir, 0o755)
    shutil.chown(munge_dir, user="munge")
    (root / "munge_dir").write_text(str(munge_dir))
    write_config(root, munge_dir / "munge.socket")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create"], check=True)
    subprocess.run(["runuser", "-u", "munge", "--", _binary("munged"), f"--socket={munge_dir / 'munge.socket'}",
                    f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
                    f"--seed-file={munge_dir / 'munged.seed'}", "--force"], check=True, timeout=30)
    env = cluster.env
    subprocess.run([_binary("slurmctld"), "-f", str(cluster.conf)], env=env, check=True, timeout=30)
    subprocess.run([_binary("slurmd"), "-f", str(cluster.conf)], env=env, check=True, timeout=30)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = cluster.run("sinfo", "-h", "-o", "%T", check=False).strip()
        if state.startswith("idle"):
            return cluster
        time.sleep(1)
    logs = "".join((root / f).read_text()[-1500:] for f in ("slurmctld.log", "slurmd.log") if (root / f).exists())
    stop(cluster)
    raise RuntimeError(f"SLURM node not idle after {timeout_s} s (state {state!r}); logs:\n{logs}")


def stop(cluster: Cluster) -> None:
    """Stop the daemons this cluster started, by PID (slurmd, slurmctld, then munged)."""
    for pid in cluster.pids():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if (cluster.root / "munge_dir").exists():
        shutil.rmtree(cluster.munge_dir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", required=True, type=Path)
    args = p.parse_args()
    cluster = Cluster(args.dir.resolve())
    if args.action == "start":
        start(cluster.root)
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        stop(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
