"""Device paths placed in a private mount namespace (kmmio.sim.placement).

The plan is tested against a made-up machine (no privileges needed); the real tests fork a
child that applies a plan and runs its checks in the program's place (``sh``, or Python for
``mmap``), as root (the overlay way and the bind way) and as ``nobody`` (a user namespace).
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from kmmio.backend import _ptrace, mounts
from kmmio.errors import UsageError
from kmmio.sim.placement import (
    Bind,
    DevicePlacement,
    Fill,
    Held,
    MakeDir,
    MakeFile,
    MakePrivate,
    MapIds,
    MountOverlay,
    MountTmpfs,
    Move,
    OpenPath,
    PlacementError,
    Step,
    Symlink,
    Unmount,
    Unshare,
    apply,
    plan,
    seen_path,
)

DIR = stat.S_IFDIR | 0o755
REG = stat.S_IFREG | 0o644
CHR = stat.S_IFCHR | 0o666
LNK = stat.S_IFLNK | 0o777

# This machine's shape: /dev/shm and /dev/pts each mounted twice (the second on the
# first), a mount on the lower /dev/pts hidden by the upper one, a mount inside /dev/shm.
MOUNTINFO = textwrap.dedent("""\
    22 27 0:21 / /proc rw,relatime - proc proc rw
    23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
    24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
    25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
    26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
    29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
    30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
    31 26 0:28 / /dev/pts/hidden rw,relatime - tmpfs tmpfs rw
    32 30 0:29 / /dev/shm/inner rw,relatime - tmpfs tmpfs rw
    33 24 0:30 / /dev/mqueue rw,relatime - mqueue mqueue rw
    34 23 0:31 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw
    35 27 0:32 / /tmp/with\\040space rw,relatime - tmpfs tmpfs rw
""")


class FakeHost:
    """A made-up machine: paths with their modes, symbolic links, a mountinfo."""

    def __init__(
        self, modes: dict[str, int], links: dict[str, str] | None = None, info: str = MOUNTINFO
    ) -> None:
        self.modes = {"/": DIR, **modes}
        self.links = links or {}
        for path in [*self.modes, *self.links]:
            while path != "/":
                path = os.path.dirname(path)
                self.modes.setdefault(path, DIR)
        self.info = info

    def realpath(self, path: str) -> str:
        out = "/"
        for part in path.strip("/").split("/"):
            out = os.path.join(out, part)
            if out in self.links:
                out = os.path.normpath(os.path.join(os.path.dirname(out), self.links[out]))
        return out

    def mode(self, path: str, follow: bool = True) -> int | None:
        if not follow and path in self.links:
            return LNK
        return self.modes.get(self.realpath(path))

    def listdir(self, path: str) -> list[str]:
        names = {p[len(path) :].lstrip("/").split("/")[0] for p in [*self.modes, *self.links]}
        return sorted(n for n in names if n and os.path.join(path, n) in {*self.modes, *self.links})

    def readlink(self, path: str) -> str:
        return self.links[path]

    def mountinfo(self) -> str:
        return self.info


BACKING = {"/run/k/b0": REG, "/run/k/b1": REG, "/run/k/b2": REG, "/run/k/scratch": DIR}


def host(*dirs: str) -> FakeHost:
    """The made-up machine with ``dirs`` too."""
    return FakeHost({**BACKING, "/dev/null": CHR, "/dev/mem": CHR, **dict.fromkeys(dirs, DIR)})


def dp(path: str, n: int = 0) -> DevicePlacement:
    return DevicePlacement(path, f"/run/k/b{n}")


def kinds(steps: Sequence[Step]) -> list[str]:
    return [type(s).__name__ for s in steps]


def of(steps: Sequence[Step], kind: type) -> list[Step]:
    return [s for s in steps if isinstance(s, kind)]


# -- the plan, pure ----------------------------------------------------------------------------


def test_placement_normalises_its_paths() -> None:
    p = DevicePlacement("//dev/./uio0/", "/run/k/../k/b0")
    assert (p.path, p.backing, p.kind) == ("/dev/uio0", "/run/k/b0", "file")
    with pytest.raises(UsageError, match="not absolute"):
        DevicePlacement("dev/uio0", "/run/k/b0")


def test_no_placements_no_namespace() -> None:
    assert plan([], "/run/k/scratch", host=host()) == []


def test_an_existing_path_is_covered_by_a_bind_mount() -> None:
    steps = plan([dp("/dev/mem")], "/run/k/scratch", user_namespace=False, host=host())
    assert steps == [
        Unshare("/dev/mem", user=False),
        MakePrivate("/dev/mem"),
        OpenPath("/dev/mem", "/run/k/b0"),
        Bind("/dev/mem", Held("/run/k/b0"), "/dev/mem"),
    ]


def test_an_existing_path_through_a_link_is_bound_where_it_leads() -> None:
    h = FakeHost(
        {**BACKING, "/sys/devices/pci0000:00/0000:00:01.0/resource0": REG},
        {"/sys/bus/pci/devices/0000:00:01.0": "../../../devices/pci0000:00/0000:00:01.0"},
    )
    p = dp("/sys/bus/pci/devices/0000:00:01.0/resource0")
    steps = plan([p], "/run/k/scratch", user_namespace=False, host=h)
    assert of(steps, Bind) == [
        Bind(p.path, Held("/run/k/b0"), "/sys/devices/pci0000:00/0000:00:01.0/resource0")
    ]
    assert seen_path(p, h) == "/sys/devices/pci0000:00/0000:00:01.0/resource0"


def test_a_missing_path_gets_an_overlay_on_its_nearest_directory_with_the_submounts_moved() -> None:
    steps = plan([dp("/dev/uio0")], "/run/k/scratch", user_namespace=False, host=host())
    s = Held("/run/k/scratch")
    assert steps == [
        Unshare("/dev/uio0", user=False),
        MakePrivate("/dev/uio0"),
        OpenPath("/dev/uio0", "/run/k/b0"),
        MountTmpfs("/dev/uio0", "/run/k/scratch", 0o700),
        OpenPath("/dev/uio0", "/run/k/scratch"),
        OpenPath("/dev/uio0", "/dev"),
        MakeDir("/dev/uio0", s.child("upper0")),
        MakeDir("/dev/uio0", s.child("work0")),
        MakeDir("/dev/uio0", s.child("mnt0")),
        MountOverlay("/dev/uio0", Held("/dev"), s.child("upper0"), s.child("work0"), s.child("mnt0"), False),
        # the topmost visible mount of each place, in mountinfo order: /dev/shm/inner moves
        # with /dev/shm, the hidden /dev/pts/hidden stays
        Move("/dev/uio0", "/dev/shm", s.child("mnt0/shm")),
        Move("/dev/uio0", "/dev/pts", s.child("mnt0/pts")),
        Move("/dev/uio0", "/dev/mqueue", s.child("mnt0/mqueue")),
        Move("/dev/uio0", s.child("mnt0"), "/dev"),
        MakeFile("/dev/uio0", "/dev/uio0"),
        Bind("/dev/uio0", Held("/run/k/b0"), "/dev/uio0"),
        Unmount("/dev/uio0", s),
    ]


def test_devices_under_one_directory_share_one_overlay_and_nested_directories_are_made_once() -> None:
    ps = [dp("/dev/uio0", 0), dp("/dev/kmmio/a/dev1", 1), dp("/dev/kmmio/a/dev2", 2)]
    steps = plan(ps, "/run/k/scratch", user_namespace=False, host=host())
    assert len(of(steps, MountOverlay)) == 1
    assert of(steps, MakeDir)[-2:] == [MakeDir(ps[1].path, "/dev/kmmio"), MakeDir(ps[1].path, "/dev/kmmio/a")]
    assert of(steps, MakeFile) == [MakeFile(p.path, p.path) for p in ps]
    assert of(steps, Bind) == [Bind(p.path, Held(p.backing), p.path) for p in ps]
    assert kinds(steps)[-1] == "Unmount"


def test_a_missing_pci_device_is_made_under_the_pci_devices_directory() -> None:
    p = dp("/sys/bus/pci/devices/0000:ff:1f.7/resource0")
    h = host("/sys/bus/pci/devices")
    steps = plan([p], "/run/k/scratch", user_namespace=False, host=h)
    (overlay,) = of(steps, MountOverlay)
    assert isinstance(overlay, MountOverlay) and overlay.lower == Held("/sys/bus/pci/devices")
    assert not [m for m in of(steps, Move) if isinstance(m, Move) and m.target != "/sys/bus/pci/devices"]
    assert MakeDir(p.path, "/sys/bus/pci/devices/0000:ff:1f.7") in steps
    assert seen_path(p, h) == p.path


def test_deeper_directories_first_and_their_overlays_move_with_the_shallower() -> None:
    ps = [dp("/dev/uio0", 0), dp("/dev/shm/kmmio-ring", 1), dp("/dev/net/tap9", 2)]
    steps = plan(ps, "/run/k/scratch", user_namespace=False, host=host("/dev/net", "/dev/shm"))
    lowers = [s.lower for s in of(steps, MountOverlay) if isinstance(s, MountOverlay)]
    assert lowers == [Held("/dev/shm"), Held("/dev/net"), Held("/dev")]
    moves = [(m.source, m.target) for m in of(steps, Move) if isinstance(m, Move)]
    # /dev/shm/inner goes into the /dev/shm overlay; /dev/shm (with its overlay on top) and
    # the /dev/net overlay go into the /dev one
    s = Held("/run/k/scratch")
    assert moves == [
        ("/dev/shm/inner", s.child("mnt0/inner")),
        (s.child("mnt0"), "/dev/shm"),
        (s.child("mnt1"), "/dev/net"),
        ("/dev/shm", s.child("mnt2/shm")),
        ("/dev/pts", s.child("mnt2/pts")),
        ("/dev/mqueue", s.child("mnt2/mqueue")),
        ("/dev/net", s.child("mnt2/net")),
        (s.child("mnt2"), "/dev"),
    ]


def test_mountinfo_escapes_are_read() -> None:
    p = dp("/tmp/with space/dev0")
    h = host("/tmp/with space")
    steps = plan([dp("/tmp/dev0"), p], "/run/k/scratch", user_namespace=False, host=h)
    assert Move("/tmp/dev0", "/tmp/with space", Held("/run/k/scratch", "mnt1/with space")) in steps


def test_the_scratch_tmpfs_is_never_moved_into_an_overlay() -> None:
    h = FakeHost({"/run/k/b0": REG, "/run/k/scratch": DIR})
    steps = plan([dp("/run/k/dev0")], "/run/k/scratch", user_namespace=False, host=h)
    assert not [m for m in of(steps, Move) if isinstance(m, Move) and m.source == "/run/k/scratch"]


def test_in_a_user_namespace_the_ids_are_mapped_and_the_directory_is_filled_with_binds() -> None:
    h = FakeHost(
        {**BACKING, "/dev/null": CHR, "/dev/pts": DIR, "/dev/shm": DIR, "/dev/net/tun": CHR},
        {"/dev/fd": "/proc/self/fd"},
    )
    steps = plan([dp("/dev/uio0")], "/run/k/scratch", user_namespace=True, ids=(1000, 100), host=h)
    assert steps[:3] == [
        Unshare("/dev/uio0", user=True),
        MapIds("/dev/uio0", 1000, 100),
        MakePrivate("/dev/uio0"),
    ]
    assert not of(steps, MountOverlay)
    farm = Held("/run/k/scratch", "farm0")
    u = "/dev/uio0"
    assert steps[steps.index(MountTmpfs(u, farm, 0o755)) + 1 :] == [
        Symlink(u, "/proc/self/fd", farm.child("fd")),
        MakeDir(u, farm.child("net")),
        Bind(u, "/dev/net", farm.child("net"), recursive=True),
        MakeFile(u, farm.child("null")),
        Bind(u, "/dev/null", farm.child("null"), recursive=True),
        MakeDir(u, farm.child("pts")),
        Bind(u, "/dev/pts", farm.child("pts"), recursive=True),
        MakeDir(u, farm.child("shm")),
        Bind(u, "/dev/shm", farm.child("shm"), recursive=True),
        Move(u, farm, "/dev"),
        MakeFile(u, "/dev/uio0"),
        Bind(u, Held("/run/k/b0"), "/dev/uio0"),
        Unmount(u, Held("/run/k/scratch")),
    ]


def test_binds_leave_the_scratch_tmpfs_out() -> None:
    h = FakeHost({"/run/k/b0": REG, "/run/k/s/scratch": DIR, "/run/k/s/other": REG})
    steps = plan([dp("/run/k/dev0")], "/run/k/s/scratch", fill="binds", user_namespace=False, host=h)
    farm = Held("/run/k/s/scratch", "farm0")
    # the directory holding it is bound without its submounts
    assert Bind("/run/k/dev0", "/run/k/s", farm.child("s"), recursive=False) in steps
    h = FakeHost({"/run/k/b0": REG, "/run/k/scratch": DIR})
    steps = plan([dp("/run/k/dev0")], "/run/k/scratch", fill="binds", user_namespace=False, host=h)
    # and the scratch directory itself is an empty directory
    assert MakeDir("/run/k/dev0", Held("/run/k/scratch", "farm0/scratch")) in steps
    assert not [b for b in of(steps, Bind) if isinstance(b, Bind) and b.source == "/run/k/scratch"]


@pytest.mark.parametrize(
    ("placements", "message"),
    [
        ([dp("/dev/shm")], "cannot place /dev/shm: it is a directory"),
        ([dp("/dev/loop")], "cannot place /dev/loop: /dev/loop is a dangling symbolic link"),
        ([dp("/dev/null/x")], "cannot place /dev/null/x: /dev/null is not a directory"),
        ([dp("/uio0")], "cannot place /uio0: it would have to be made in / itself"),
        ([dp("/proc/kmmio")], "cannot place /proc/kmmio: it would have to be made in /proc, under /proc"),
        ([dp("/dev/a"), dp("/dev/a", 1)], "cannot place /dev/a: given twice"),
        ([dp("/dev/a"), dp("/dev/a/b", 1)], "cannot place /dev/a/b: it is inside the device path /dev/a"),
        ([dp("/dev/a", 7)], "cannot place /dev/a: the backing file /run/k/b7 is not a regular file"),
        ([dp("/run/k/scratch/x")], "cannot place /run/k/scratch/x: it is inside the scratch directory"),
    ],
)
def test_what_cannot_be_placed_is_one_line(placements: list[DevicePlacement], message: str) -> None:
    h = FakeHost({**BACKING, "/dev/null": CHR, "/dev/shm": DIR, "/proc/1": DIR}, {"/dev/loop": "/nowhere"})
    with pytest.raises(PlacementError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        plan(placements, "/run/k/scratch", user_namespace=False, host=h)


def test_a_failing_step_names_the_path_the_call_and_the_errno() -> None:
    with pytest.raises(PlacementError) as got:
        apply([MakeDir("/dev/uio0", "/nonexistent-kmmio/dir")])
    assert str(got.value) == (
        "cannot place /dev/uio0: mkdir /nonexistent-kmmio/dir: ENOENT: No such file or directory"
    )
    assert got.value.errno == errno.ENOENT and got.value.path == "/dev/uio0"


# -- the real thing ----------------------------------------------------------------------------

PR_SET_DUMPABLE = 4

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SYS_ADMIN) to mount")


def in_child(prepare: Callable[[], None], argv: Sequence[str]) -> tuple[int, str]:
    """Fork; the child runs ``prepare`` (placements...) then execs ``argv`` with its output
    on a pipe: (exit status, output).  A failure before exec is reported as output, 99."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            prepare()
            os.execvp(argv[0], list(argv))
        except BaseException as e:
            os.write(w, f"PREPARE FAILED: {e}\n".encode())
        os._exit(99)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory everyone may enter (``nobody`` too), with an empty ``scratch`` in it."""
    d = Path(tempfile.mkdtemp(prefix="kmmio-place-"))
    d.chmod(0o755)
    (d / "scratch").mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d)


def backing(d: Path, name: str, size: int) -> Path:
    p = d / name
    p.write_bytes(bytes(size))
    return p


def placed(steps: list[Step]) -> Callable[[], None]:
    return lambda: apply(steps)


UIO = "/dev/kmmio-test-uio0"
PCI = "/sys/bus/pci/devices/0000:ff:1f.7/resource0"
NESTED = "/dev/kmmio-test/sub/dev1"

CHECKS = """
set -e
stat -c '%n %s %F' {UIO} {PCI} {NESTED}
echo through-null > /dev/null && echo null-ok
head -c 4 /dev/zero | od -An -tx1
test -d /dev/pts && echo pts-ok
ls /dev/pts | grep -q ptmx && echo ptmx-ok
echo from-child > /dev/shm/"$1"
grep ' /dev ' /proc/self/mountinfo | grep -c -e overlay -e kmmio
"""


@root
@pytest.mark.parametrize("fill", ["overlay", "binds"])
def test_missing_paths_are_made_and_the_rest_of_dev_still_works(work: Path, fill: Fill) -> None:
    assert not os.path.lexists(UIO) and not os.path.lexists(PCI)
    before = Path("/proc/self/mountinfo").read_text()
    ps = [
        DevicePlacement(UIO, str(backing(work, "b0", 4096))),
        DevicePlacement(PCI, str(backing(work, "b1", 0x4000))),
        DevicePlacement(NESTED, str(backing(work, "b2", 8192))),
    ]
    steps = plan(ps, str(work / "scratch"), fill=fill)
    shm = f"kmmio-place-{os.getpid()}-{fill}"
    try:
        status, out = in_child(
            placed(steps), ["sh", "-c", CHECKS.format(UIO=UIO, PCI=PCI, NESTED=NESTED), "sh", shm]
        )
        assert status == 0, out
        lines = out.splitlines()
        assert lines[:3] == [
            f"{UIO} 4096 regular file",
            f"{PCI} 16384 regular file",
            f"{NESTED} 8192 regular file",
        ]
        assert lines[3:7] == ["null-ok", " 00 00 00 00", "pts-ok", "ptmx-ok"]
        assert lines[-1] == "1"  # one copy of /dev, shared by two devices
        # /dev/shm is the host's: what the child made there is seen here
        assert (Path("/dev/shm") / shm).read_text() == "from-child\n"
    finally:
        Path("/dev/shm", shm).unlink(missing_ok=True)
    # the host is untouched
    assert not os.path.lexists(UIO) and not os.path.lexists("/dev/kmmio-test") and not os.path.lexists(PCI)
    assert Path("/proc/self/mountinfo").read_text() == before
    assert os.listdir(work / "scratch") == []


@root
def test_an_existing_file_is_covered_and_left_as_it_was(work: Path) -> None:
    target = work / "device"
    target.write_text("the host's\n")
    b = backing(work, "b0", 100)
    b.write_bytes(b"backing" + bytes(93))
    steps = plan([DevicePlacement(str(target), str(b))], str(work / "scratch"))
    assert not of(steps, MountOverlay) and not of(steps, MountTmpfs)
    status, out = in_child(placed(steps), ["sh", "-c", f"stat -c '%s %F' {target}; head -c 7 {target}; echo"])
    assert (status, out) == (0, "100 regular file\nbacking\n")
    assert target.read_text() == "the host's\n"


MMAP = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[8:12] = b"kmio"
m.flush()
print(os.fstat(fd).st_size, bytes(m[0:4]).hex())
"""


@root
@pytest.mark.parametrize("path", [UIO, "existing"])
def test_writes_through_the_path_reach_the_backing_file(work: Path, path: str) -> None:
    if path == "existing":
        path = str(work / "existing")
        Path(path).write_bytes(bytes(16))
    b = backing(work, "b0", 4096)
    b.write_bytes(b"\x01\x02\x03\x04" + bytes(4092))
    steps = plan([DevicePlacement(path, str(b))], str(work / "scratch"))
    status, out = in_child(placed(steps), [sys.executable, "-c", MMAP, path])
    assert (status, out) == (0, "4096 01020304\n")
    assert b.read_bytes()[8:12] == b"kmio"


@root
@pytest.mark.parametrize("fill", ["overlay", "binds"])
def test_a_device_in_the_directory_holding_the_scratch(work: Path, fill: Fill) -> None:
    (work / "kept").write_text("kept\n")
    dev = work / "dev0"
    steps = plan([DevicePlacement(str(dev), str(backing(work, "b0", 64)))], str(work / "scratch"), fill=fill)
    status, out = in_child(placed(steps), ["sh", "-c", f"ls {work}; stat -c %s {dev}; cat {work}/kept"])
    assert (status, out) == (0, "b0\ndev0\nkept\nscratch\n64\nkept\n")
    assert not dev.exists()


@root
def test_relative_paths_from_the_working_directory_when_it_is_covered(work: Path) -> None:
    steps = plan([DevicePlacement(str(work / "dev0"), str(backing(work, "b0", 64)))], str(work / "scratch"))
    old = os.getcwd()
    os.chdir(work)  # the very directory covered
    try:
        status, out = in_child(placed(steps), ["sh", "-c", "stat -c %s dev0"])
    finally:
        os.chdir(old)
    assert (status, out) == (0, "64\n")


def as_nobody(then: Callable[[], None]) -> Callable[[], None]:
    nobody = pwd.getpwnam("nobody")

    def run() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        # a uid change makes the process undumpable, its /proc/self/uid_map root's
        _ptrace.prctl(PR_SET_DUMPABLE, 1)
        then()

    return run


def user_namespaces() -> str | None:
    """Why ``nobody`` cannot make a user namespace here, or None."""
    if os.geteuid() != 0:
        return "needs root to become nobody"
    status, out = in_child(
        as_nobody(lambda: mounts.unshare(mounts.CLONE_NEWUSER | mounts.CLONE_NEWNS)), ["true"]
    )
    return None if status == 0 else f"no unprivileged user namespaces here: {out.strip()}"


@pytest.fixture
def nobody_work(work: Path) -> Path:
    nobody = pwd.getpwnam("nobody")
    os.chown(work / "scratch", nobody.pw_uid, nobody.pw_gid)
    return work


def test_unprivileged_user_namespace(nobody_work: Path) -> None:
    if (why := user_namespaces()) is not None:
        pytest.skip(why)
    work = nobody_work
    nobody = pwd.getpwnam("nobody")
    bs = [backing(work, f"b{i}", 4096 * (i + 1)) for i in range(2)]
    for b in bs:
        os.chown(b, nobody.pw_uid, nobody.pw_gid)
    ps = [DevicePlacement(UIO, str(bs[0])), DevicePlacement(PCI, str(bs[1]))]
    shm = f"kmmio-place-{os.getpid()}-nobody"

    def prepare() -> None:
        steps = plan(ps, str(work / "scratch"))  # as nobody: a user namespace, binds
        assert kinds(steps)[:2] == ["Unshare", "MapIds"] and not of(steps, MountOverlay)
        apply(steps)

    script = f"""set -e
        stat -c '%n %s %F' {UIO} {PCI}
        id -u
        echo x > /dev/null && echo null-ok
        ls /dev/pts | grep -q ptmx && echo ptmx-ok
        echo from-nobody > /dev/shm/{shm}
        printf kmio | dd of={UIO} bs=1 seek=8 conv=notrunc 2>/dev/null
    """
    try:
        status, out = in_child(as_nobody(prepare), ["sh", "-c", script])
        assert status == 0, out
        assert out.splitlines() == [
            f"{UIO} 4096 regular file",
            f"{PCI} 8192 regular file",
            str(nobody.pw_uid),
            "null-ok",
            "ptmx-ok",
        ]
        assert Path("/dev/shm", shm).read_text() == "from-nobody\n"
        assert bs[0].read_bytes()[8:12] == b"kmio"
    finally:
        Path("/dev/shm", shm).unlink(missing_ok=True)
    assert not os.path.lexists(UIO)


def test_without_privileges_nor_a_user_namespace_one_line_says_what_is_needed(nobody_work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    b = backing(nobody_work, "b0", 64)

    def prepare() -> None:
        apply(plan([DevicePlacement(UIO, str(b))], str(nobody_work / "scratch"), user_namespace=False))

    status, out = in_child(as_nobody(prepare), ["true"])
    assert status == 99
    assert out == (
        f"PREPARE FAILED: cannot place {UIO}: unshare(CLONE_NEWNS): EPERM: kmmio sim needs root "
        "(CAP_SYS_ADMIN) or unprivileged user namespaces\n"
    )


DRIVER = r"""
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { perror(argv[1]); return 1; }
    struct stat st;
    fstat(fd, &st);
    volatile uint32_t *r = mmap(0, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) { perror("mmap"); return 1; }
    r[1] = 0xdeadbeef;
    printf("%s %ld %x\n", S_ISREG(st.st_mode) ? "regular" : "other", (long)st.st_size, r[1]);
    return 0;
}
"""


@pytest.mark.ptrace
@pytest.mark.parametrize("who", ["root", "nobody"])
def test_a_traced_program_finds_its_device(nobody_work: Path, who: str) -> None:
    """Under ptrace, as root and (through a user namespace) as nobody: the tracer in the
    parent namespace traces the placed path's mapping, and the access reaches the backing."""
    import kmmio
    from kmmio.serve import Serving
    from kmmio.trace import Access

    if who == "nobody" and (why := user_namespaces()) is not None:
        pytest.skip(why)
    if (cc := shutil.which("cc")) is None:
        pytest.skip("needs cc")
    work = nobody_work
    exe = work / "driver"
    src = work / "driver.c"
    src.write_text(DRIVER)
    subprocess.run([cc, "-O1", "-o", str(exe), str(src)], check=True)
    b = backing(work, "b0", 4096)
    nobody = pwd.getpwnam("nobody")
    os.chown(b, nobody.pw_uid, nobody.pw_gid)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the tracer, as root or nobody
        code = 1
        try:
            os.close(r)
            os.dup2(w, 1)
            if who == "nobody":
                as_nobody(lambda: None)()
            steps = plan([DevicePlacement(UIO, str(b))], str(work / "scratch"))

            class Placing(Serving):
                def prepare_child(self) -> None:
                    apply(steps)

            records: list[object] = []
            paths: list[str] = []
            tracer = kmmio.Tracer(
                [UIO], records.append, serving=Placing(), on_map=lambda m: paths.append(m.path)
            )
            tracer.spawn([str(exe), UIO])
            status = tracer.run()
            acc = [(a.kind.value, a.width, a.phys, a.value) for a in records if isinstance(a, Access)]
            os.write(1, f"{status} {paths} {acc}\n".encode())
            code = 0
        except BaseException as e:
            os.write(1, f"TRACER FAILED: {e}\n".encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out == f"regular 4096 deadbeef\n0 ['{UIO}'] [('W', 4, 4, 3735928559), ('R', 4, 4, 3735928559)]\n"
    assert b.read_bytes()[4:8] == (0xDEADBEEF).to_bytes(4, "little")
