"""A real one-node SLURM cluster (Debian's slurm-wlm and munge) in a folder, for the cluster tests.

`slurm_cluster(folder)` starts munged, slurmctld and slurmd as root with everything of theirs in `folder`: the
munge key and socket, slurm.conf, state, logs and pid files; the ports are free ones. One thing lives outside
it: /etc/slurm/slurm.conf links to its config while the cluster runs, because the executor's job step drops
SLURM_CONF before it calls srun (snakemake-executor-plugin-slurm issue #164), so srun finds only the default
path. A machine with its own /etc/slurm/slurm.conf is therefore left alone: the cluster does not start there.
The node offers 2 CPUs and 2 generic `gpu` GRES (/dev/null and /dev/zero stand in for their devices): jobs are
scheduled as on a GPU node, and the code runs on the CPU. Job status is read with `squeue`: MinJobAge is an
hour, so finished jobs stay visible to it, and no slurmdbd or database is needed. The daemons are stopped
when the context ends, pass or fail.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
INSTALL_HINT = "apt-get install slurmctld slurmd slurm-client munge (as .ci/run does)"
NODE_MEMORY_MB = 8000


def missing_requirement() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    missing = [path for path in (*DAEMONS, shutil.which("sbatch") or "sbatch") if not os.path.exists(path)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "the SLURM test cluster runs its daemons as root"
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        return f"{DEFAULT_CONF} exists: this machine has its own SLURM, which the test cluster would replace"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=bsrtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=sched_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={NODE_MEMORY_MB} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    # SLURM wants a character device per GPU; the jobs never open these stand-ins.
    (folder / "gres.conf").write_text("".join(f"NodeName={host} Name=gpu File={device}\n"
                                              for device in ("/dev/null", "/dev/zero")))
    return conf


def start_munge(folder: Path) -> None:
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    subprocess.run(["/usr/sbin/munged", "--force", f"--key-file={key}", f"--socket={folder}/munge.socket",
                    f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                    f"--seed-file={folder}/munged.seed"], check=True, capture_output=True, text=True)


def wait_for_node(env: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "--noheader", "-o", "%T"], env=env, capture_output=True, text=True)
        state = result.stdout.strip() or result.stderr.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"the test SLURM node is not idle after {timeout:.0f} s (state: {state!r})")


def pids(folder: Path) -> list[int]:
    found = []
    for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            found.append(int((folder / name).read_text().split()[0]))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: the daemons double-fork, so they are not our children to reap.
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return False


def stop(folder: Path, env: dict) -> None:
    """Cancel every job, then stop slurmd, slurmctld and munged, waiting until each is gone."""
    subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
    for pid in pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def slurm_cluster(folder: Path):
    """Yield the environment (SLURM_CONF and the PATH of this checkout) for sbatch, squeue and Snakemake."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    env = {**os.environ, "SLURM_CONF": str(write_config(folder))}
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.symlink_to(env["SLURM_CONF"])
    try:
        start_munge(folder)
        for daemon in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd"):
            subprocess.run([daemon, "-f", env["SLURM_CONF"]], env=env, check=True, capture_output=True, text=True)
        wait_for_node(env)
        yield env
    finally:
        stop(folder, env)
        DEFAULT_CONF.unlink()


def daemons_left(folder: Path) -> list[int]:
    return [pid for pid in pids(folder) if alive(pid)]
