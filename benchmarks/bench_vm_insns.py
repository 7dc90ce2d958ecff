"""Guest instructions per warm call and per raw ping of a VM sandbox under TCG (issue 15, HOST side).

Wall-clock ratios on a shared machine swing with its load; the number of
guest instructions a round trip executes does not. This compiles a small
TCG plugin (C, with the host's ``gcc``; QEMU's plugin API, version 1) that
counts every executed translation block's instructions and writes the
counts when asked, boots one STRICT VM sandbox with it, and counts N warm
``execute(f, 1)`` calls, then N raw ping frames, split by guest address into
the guest kernel (upper half) and user space (the worker's Python, msgpack,
libc). A diagnostic only: the plugin is loaded here, never by the backend.

Usage: ``python benchmarks/bench_vm_insns.py [N]`` (default 2000).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

PLUGIN_C = r"""
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <pthread.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, int op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
typedef struct { uint64_t vaddr, n_insns, count; } Ent;
#define MAXE (1 << 22)
static Ent *ents; static size_t nents; static const char *dir;
static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  pthread_mutex_lock(&lk);
  if (nents < MAXE) {
    Ent *e = &ents[nents++];
    e->vaddr = qemu_plugin_tb_vaddr(tb); e->n_insns = qemu_plugin_tb_n_insns(tb); e->count = 0;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, 0, &e->count, 1);
  }
  pthread_mutex_unlock(&lk);
}
static void *dumper(void *arg) {
  char req[512], out[512], tmp[520];
  snprintf(req, sizeof req, "%s/req", dir); snprintf(out, sizeof out, "%s/dump", dir);
  snprintf(tmp, sizeof tmp, "%s/dump.tmp", dir);
  for (;;) {
    usleep(20000);
    if (access(req, F_OK) != 0) continue;
    FILE *f = fopen(tmp, "w");
    if (f) {
      uint64_t kern = 0, user = 0;
      for (size_t i = 0; i < nents; i++) {
        uint64_t n = ents[i].count * ents[i].n_insns;
        if (ents[i].vaddr >= 0xffff800000000000ULL) kern += n; else user += n;
      }
      fprintf(f, "%" PRIu64 " %" PRIu64 "\n", kern, user);
      fclose(f); rename(tmp, out);
    }
    unlink(req);
  }
  return NULL;
}
__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc, char **argv) {
  dir = argc > 0 && argv[0][0] == 'd' && argv[0][1] == 'i' ? argv[0] + 4 : "/tmp";
  ents = calloc(MAXE, sizeof(Ent));
  pthread_t t; pthread_create(&t, NULL, dumper, NULL);
  qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
  return 0;
}
"""


def f(x: int) -> int:
    return x


def build_plugin(workdir: str) -> str:
    """Compile the counting plugin into ``workdir``; its path."""
    src, lib = os.path.join(workdir, "count.c"), os.path.join(workdir, "count.so")
    with open(src, "w") as fh:
        fh.write(PLUGIN_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", lib, src, "-lpthread"], check=True)
    return lib


def counts(workdir: str) -> tuple[int, int]:
    """Ask the plugin for its cumulative (kernel, user) instruction counts."""
    req, out = os.path.join(workdir, "req"), os.path.join(workdir, "dump")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out)
    open(req, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(out) or os.path.exists(req):
        if time.monotonic() > deadline:
            raise SystemExit("the plugin did not answer (was it loaded?)")
        time.sleep(0.02)
    with open(out) as fh:
        kern, user = fh.read().split()
    return int(kern), int(user)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    if shutil.which("gcc") is None:
        raise SystemExit("gcc not found: the counting plugin is compiled here")
    import glsandbox_kernel.backends.vm.machine as machine
    from glsandbox_kernel import IsolationType, OSSandbox
    from glsandbox_kernel.backends.vm import POOLS, VMBackend, detect_accel
    from glsandbox_kernel.config import create_config_by_level

    ok, why = VMBackend.available()
    if not ok or detect_accel().name != "tcg":
        raise SystemExit(f"needs the VM backend under TCG ({why if not ok else detect_accel().reason})")
    workdir = tempfile.mkdtemp(prefix="glsandbox-insns-")
    os.chmod(workdir, 0o777)  # QEMU runs as nobody once set up (as root)
    plugin = build_plugin(workdir)
    command = machine.qemu_command

    def with_plugin(*args: Any, **kwargs: Any) -> list[str]:
        cmd = command(*args, **kwargs)
        at = cmd.index("-sandbox")
        return [*cmd[:at], "-plugin", f"{plugin},dir={workdir}", *cmd[at:]]

    machine.qemu_command = with_plugin
    POOLS.set_size(0)
    try:
        with OSSandbox(create_config_by_level("strict", isolation_type=IsolationType.VM)) as box:
            for _ in range(200):
                box.execute(f, 1)
            chan = box.session.chan
            assert chan is not None
            c0 = counts(workdir)
            for _ in range(n):
                box.execute(f, 1)
            c1 = counts(workdir)
            for _ in range(n):
                chan.send({"type": "ping", "id": 0})
                chan.recv()
            c2 = counts(workdir)
    finally:
        machine.qemu_command = command
        POOLS.drain_all()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = collections.OrderedDict([("warm execute(f, 1)", (c0, c1)), ("raw ping frame", (c1, c2))])
    print(f"guest instructions per round trip, {n} each (includes the guest's idle-time work meanwhile)")
    for name, (a, b) in rows.items():
        kern, user = (b[0] - a[0]) / n, (b[1] - a[1]) / n
        print(f"{name:22} total {kern + user:8.0f}  kernel {kern:8.0f}  user {user:8.0f}")


if __name__ == "__main__":
    main()
