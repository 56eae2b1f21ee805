"""Running the registry's commands: in this process (execute, run_all), or one command a
line for GNU parallel, xargs or a Slurm array (commands, run_one).

    python3 experiments/run.py --commands --group findings --blas-threads 1 | parallel -j 2
    sed -n "${SLURM_ARRAY_TASK_ID}p" commands.txt | bash

Each line of --commands is `python3 experiments/run.py --run-one GROUP/STEM`, which makes
the folders it needs, takes runs/GROUP/STEM.lock (so the same run never starts twice on a
shared folder), resumes from its checkpoint when there is one, and leaves its result at
its own path, written whole or not at all (the scripts write their JSON atomically, a
log is copied to a .part file and renamed).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ff_label_in_input as ff
from registry import GROUP_NAMES, ROOT, Run, done

# The children running now. Each runs in its own session, so a stop signal reaches it only
# through the runner, which forwards it to the child's process group and waits while the
# child checkpoints: stopping the runner by its PID (kill, Slurm) stops its runs too.
LIVE: set = set()
STOPPING = threading.Event()                    # set once a stop is forwarded: start no more


def start(argv, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    LIVE.add(proc)
    return proc


def forward_stop(signum: int):
    """Send signum to every running child's process group; start no new run."""
    STOPPING.set()
    for proc in list(LIVE):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass


def wait_child(proc: subprocess.Popen) -> int:
    """The child's exit status. A stop signal meanwhile (Stopped in this thread) is
    forwarded to it, and the child is waited for before the stop goes on."""
    try:
        return proc.wait()
    except KeyboardInterrupt as stop:
        forward_stop(getattr(stop, "signum", signal.SIGINT))
        proc.wait()
        raise
    finally:
        LIVE.discard(proc)


def execute(run: Run, threads=None, root: Path = ROOT, python=sys.executable) -> bool:
    """Run one command in `root`; True when its result is there afterwards."""
    if STOPPING.is_set():
        return False
    for folder in run.folders():
        (root / folder).mkdir(parents=True, exist_ok=True)
    resume = bool(run.checkpoint) and not run.stdout and (root / run.checkpoint).exists()
    argv = [python, *run.command(resume)[1:]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    with open(root / run.log, "a" if resume else "w") as log:   # a resumed run keeps its earlier lines
        if resume:
            log.write(f"--- resumed from {run.checkpoint} ---\n")
            log.flush()
        if run.stdout:
            part = root / (run.out + ".part")
            with open(part, "w") as out:
                rc = run_to(argv, root, env, out, log, run.stop_after_epoch)
            if rc == 0:
                part.replace(root / run.out)
        else:
            rc = wait_child(start(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT))
    ok = rc == 0 and done(run, root)
    how = "resumed, " if resume else ""
    if ok:
        ff.say(f"{run.name}: ok ({how}{time.time() - t0:.0f} s)")
    else:
        tail = (root / run.log).read_text().strip().splitlines()[-1:] or ["no output"]
        ff.say(f"{run.name}: {'stopped' if STOPPING.is_set() else 'FAILED'}, exit {rc} "
               f"({how}{time.time() - t0:.0f} s): {tail[0]} (log: {run.log})")
    return ok


def run_to(argv, root, env, out, err, stop_after_epoch=None) -> int:
    """Run argv with its standard output copied to `out`; with stop_after_epoch, send it
    Ctrl-C (SIGINT) once that epoch's progress line is out. Returns the exit status, 0
    for a run stopped as planned (it exits 130 after saving its checkpoint)."""
    # a run that must stop gets Ctrl-C's default handling even when the runner itself was
    # started with SIGINT ignored (a background job): else the signal would be lost
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if stop_after_epoch else None
    proc = start(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                 preexec_fn=preexec)
    stop = re.compile(rf"epoch\s+{stop_after_epoch}/") if stop_after_epoch else None
    stopped = False
    for line in proc.stdout:
        out.write(line)
        if stop and not stopped and stop.match(line):
            proc.send_signal(signal.SIGINT)
            stopped = True
    rc = wait_child(proc)
    return 0 if stopped and rc == 130 else rc


def run_all(todo: list, jobs=1, threads=None, root: Path = ROOT) -> bool:
    """Run `todo`, `jobs` at a time, then the timing runs one by one; True if all went well."""
    together = [r for r in todo if not r.alone]
    ok = True
    if together:
        blas = threads or (1 if jobs == 2 else None)
        with ThreadPoolExecutor(jobs) as pool:
            try:
                ok = all(list(pool.map(lambda r: execute(r, blas, root), together)))
            except KeyboardInterrupt as stop:        # the workers' children: forward, then wait
                pool.shutdown(wait=False, cancel_futures=True)
                forward_stop(getattr(stop, "signum", signal.SIGINT))
                raise
    for run in todo:
        if run.alone:
            ok = execute(run, threads, root) and ok
    return ok


def listing(runs: list, root: Path = ROOT) -> str:
    """The commands, one a line, after the mkdir they need; runnable from the repo root."""
    folders = {f for r in runs for f in r.folders(log=False)}
    folders = sorted(f for f in folders if not any(g.startswith(f + "/") for g in folders))
    lines = ["# from the repository root; a run with --checkpoint continues with --resume PATH",
             f"mkdir -p {' '.join(folders)}"]
    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        missing = sum(not done(r, root) for r in members)
        lines.append(f"# {group}: {len(members)} run{'s' * (len(members) != 1)}, {missing} missing")
        lines += [r.shell() for r in members]
    return "\n".join(lines)


def status(runs, root: Path = ROOT) -> str:
    lines = []
    for group in GROUP_NAMES:
        members = [r for r in runs if r.group == group]
        finished = sum(done(r, root) for r in members)
        lines.append(f"{group:12s} {finished:3d} of {len(members):3d} done")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# One command a line, each run under a lock file.
# ----------------------------------------------------------------------------

def commands(runs: list, threads=None, root: Path = ROOT) -> str:
    """A `--run-one` line for each run not done, timing runs last (give those the machine
    to themselves); no comments, so any line can go to a shell alone."""
    todo = [r for r in runs if not done(r, root)]
    todo = [r for r in todo if not r.alone] + [r for r in todo if r.alone]
    extra = ["--blas-threads", str(threads)] if threads else []
    return "\n".join(shlex.join(["python3", "experiments/run.py", "--run-one", r.name, *extra])
                     for r in todo)


def lock_path(run: Run) -> str:
    return f"runs/{run.group}/{run.stem}.lock"


def alive(pid: int) -> bool:
    """A process with this id runs on this host (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_lock(path: Path, me: dict) -> str | None:
    """Create the lock file holding `me` ({"host", "pid"}); None once it is ours, else why
    not. A lock of a dead process on this host is stale and taken over."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                seen, host, pid = holder(path)
            except FileNotFoundError:                # its run just ended: try again
                continue
            if host is None:
                return f"{lock_name(path)} is unreadable; not started (delete it if no run is going)"
            if host != me["host"]:
                return (f"locked by pid {pid} on {host}, another machine; not started "
                        f"(delete {lock_name(path)} if no run is going there)")
            if alive(pid):
                return f"running already (pid {pid}); not started"
            if not move_aside(path, seen):
                return "another runner took over the stale lock; not started"
            print(f"{lock_name(path)}: taken over from pid {pid}, which has ended", flush=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me) + "\n")
        return None
    return f"could not take {lock_name(path)}; not started"


def holder(path: Path) -> tuple:
    """(text, host, pid) of a lock file; host and pid None when it stays unreadable for a
    second. Its runner writes it just after creating it, so it can be empty a moment."""
    for _ in range(20):
        seen = path.read_text()
        try:
            content = json.loads(seen)
            return seen, content["host"], int(content["pid"])
        except (ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return seen, None, None


def lock_name(path: Path) -> str:
    """runs/GROUP/STEM.lock, as the user sees it from the repository root."""
    return "/".join(path.parts[-3:])


def move_aside(path: Path, seen: str) -> bool:
    """Remove a stale lock unless another runner replaced it since we read `seen`."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if aside.read_text() != seen:                    # a fresh lock: give it back
        os.rename(aside, path)
        return False
    aside.unlink()
    return True


def run_one(run: Run, threads=None, root: Path = ROOT) -> int:
    """--run-one: make `run` unless it is done or running; the exit status (0 also when
    it was skipped, with one line saying why)."""
    if done(run, root):
        print(f"{run.name}: done already", flush=True)
        return 0
    lock = root / lock_path(run)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    why = take_lock(lock, me)
    if not why and done(run, root):                  # made by another runner meanwhile
        release(lock, me)
        why = "done already"
    if why:
        print(f"{run.name}: {why}", flush=True)
        return 0
    try:
        return 0 if execute(run, threads, root) else 1
    finally:                                         # also on a stop (Stopped): the lock goes
        release(lock, me)


def release(lock: Path, me: dict):
    """Remove the lock if it is still ours."""
    try:
        if json.loads(lock.read_text()) == me:
            lock.unlink()
    except (FileNotFoundError, ValueError):
        pass
