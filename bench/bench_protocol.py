"""Protocol benchmark: command round trip, log pull rate, stage+verify+commit of the largest program.

    python bench/bench_protocol.py            # in-process loopback (firmware server + fake controller)
    python bench/bench_protocol.py PORT       # a rig: virtual rig pty, a Pico's /dev/ttyACM0, or a URL

Against a rig the key comes from the key store (pumpctl deploy provisions it) or --key-hex. The
commit replaces the running program, so afterwards the previous program is committed again
(when there was one). Prints figures; asserts nothing (targets are in issue 4: round trip
median < 5 ms, log pull > 2,000 records/s, largest program < 1 s on the virtual rig).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "firmware"), str(REPO)]

from pumpcore import program as prog_mod  # noqa: E402
from pumpcore import wire  # noqa: E402
from pumpctl.pump import Pump  # noqa: E402
from pumpctl.transport import LoopbackTransport  # noqa: E402


def largest_program() -> prog_mod.Program:
    """A valid program of the largest encodable size: 7 weekday patterns x 24 steps, 12 periodic."""
    patterns = [(1 << d, [(h * 3_600_000, 150_000 + 1000 * h) for h in range(prog_mod.MAX_STEPS)])
                for d in range(prog_mod.MAX_PATTERNS)]
    periodic = [(i * 7_200_000, 1000, 60_000) for i in range(prog_mod.MAX_PERIODIC)]
    p = prog_mod.Program(mode=prog_mod.MODE_FLEX, concentration_ug_ml=2000, patterns=patterns,
                         periodic=periodic, patient=(50_000, 60_000, 3 * 3_600_000, 4),
                         low_volume_nl=2_000_000, low_days=7)
    p.validate()
    return p


def loopback_link(records: int) -> LoopbackTransport:
    from tests.protocol.fakes import FakeController

    class BenchController(FakeController):
        def decode_program(self, buf):  # the real decoder, as on the rig
            return prog_mod.Program.decode(buf)

        def check_program(self, program):
            return None

    return LoopbackTransport(BenchController(records=records))


MPY_BENCH = r"""
import time
from pumpcore import wire, authhost
from pumpfw.server import ProtocolServer
from tests.protocol.fakes import FakeController, KEY, RIG
out = []
ctl = FakeController(records=200)
server = ProtocolServer(ctl, out.append)
N = %d

def per_frame(lines):
    t = time.ticks_us()
    for line in lines:
        server.feed(line)
    return time.ticks_diff(time.ticks_us(), t) / len(lines)

status = [wire.encode_frame(0, i, wire.CMD_STATUS, 0, b"") for i in range(N)]
logs = [wire.encode_frame(0, i, wire.CMD_LOG_READ, 0, bytes((0, 0, 0, 0, 31))) for i in range(N)]
chunk = bytes(wire.MAX_STAGE_CHUNK)
stage = [wire.encode_frame(0, i, wire.CMD_PROG_STAGE, 0, wire.pack_fields(wire.PROG_STAGE_REQ,
         {"offset": 0, "total_len": 4000}) + chunk) for i in range(N)]
signed = [wire.frame_to_line(authhost.sign_request(i, wire.CMD_SUSPEND, b"", RIG, i + 1, KEY)) for i in range(N)]
print("status %%.0f" %% per_frame(status))
print("log31 %%.0f" %% per_frame(logs))
print("stage1016 %%.0f" %% per_frame(stage))
print("signed %%.0f" %% per_frame(signed))
"""


def micropython_figures(n: int) -> None:
    """Firmware-side cost per frame in the micropython unix port (the RP2040 is ~10-30x slower)."""
    from tests.support.mpy import run_micropython
    got = dict(line.split() for line in run_micropython(MPY_BENCH % n, extra_path=[str(REPO)]).split("\n") if line)
    print("server in micropython (unix port, us per request incl. decode+dispatch+encode): status %s, "
          "log read of 31 records %s, 1016-byte stage chunk %s, signed suspend (HMAC) %s" % (
              got["status"], got["log31"], got["stage1016"], got["signed"]))


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", nargs="?", help="rig port or URL (default: in-process loopback)")
    ap.add_argument("--key-hex", help="rig key as hex (default: the key store)")
    ap.add_argument("--rounds", type=int, default=300, help="round trips to time (default 300)")
    ap.add_argument("--records", type=int, default=5000, help="log records on the loopback rig (default 5000)")
    ap.add_argument("--no-commit", action="store_true", help="stage and verify only (leave the rig's program)")
    ap.add_argument("--no-mpy", action="store_true", help="skip the firmware-side figures in the micropython binary")
    args = ap.parse_args(argv)

    key = bytes.fromhex(args.key_hex) if args.key_hex else None
    if args.port:
        pump = Pump.open(args.port, key=key, timeout_s=3.0)
        where = "rig %s on %s (firmware %s)" % (pump.rig_id, args.port, pump.info.firmware_version)
    else:
        pump = Pump.open(loopback_link(args.records), key=bytes(range(32)))
        where = "in-process loopback (firmware ProtocolServer on CPython, fake controller)"
    with pump:
        print("protocol benchmark: %s" % where)
        rt = timed(pump.status, args.rounds)
        print("status round trip:   median %.3f ms  p95 %.3f ms  (n=%d)" % (
            1000 * statistics.median(rt), 1000 * sorted(rt)[int(0.95 * len(rt)) - 1], len(rt)))
        rt = timed(pump.hello, max(args.rounds // 3, 10))
        print("hello round trip:    median %.3f ms" % (1000 * statistics.median(rt)))

        t = time.perf_counter()
        n = sum(1 for _ in pump.iter_log(0))
        dt = time.perf_counter() - t
        print("log pull:            %d records in %.3f s = %.0f records/s (%d per frame)" % (
            n, dt, n / dt if dt > 0 else 0.0, wire.MAX_LOG_RECORDS))
        full = pump.read_log(0, wire.MAX_LOG_RECORDS)
        if len(full.records) == wire.MAX_LOG_RECORDS:
            rt = timed(lambda: pump.read_log(full.first_seq, wire.MAX_LOG_RECORDS), 100)
            print("log read, full frame: median %.3f ms for %d records = %.0f records/s steady state" % (
                1000 * statistics.median(rt), wire.MAX_LOG_RECORDS, wire.MAX_LOG_RECORDS / statistics.median(rt)))
        else:
            print("log read, full frame: skipped (the rig holds fewer than %d records)" % wire.MAX_LOG_RECORDS)

        big = largest_program()
        enc = big.encode()
        before = pump.read_program(wire.PROG_WHICH_RUNNING, wire.PROG_PART_ENCODED)
        t = time.perf_counter()
        pump.stage_program(enc)
        t_stage = time.perf_counter()
        ver = pump.verify_program()
        t_verify = time.perf_counter()
        committed = False
        if not args.no_commit:
            pump.commit_program(ver.crc)
            committed = True
        t_end = time.perf_counter()
        print("largest program:     %d bytes (%d chunks): stage %.1f ms, verify %.1f ms, commit %s -> total %.1f ms" % (
            len(enc), -(-len(enc) // wire.MAX_STAGE_CHUNK), 1000 * (t_stage - t), 1000 * (t_verify - t_stage),
            "%.1f ms" % (1000 * (t_end - t_verify)) if committed else "skipped", 1000 * (t_end - t)))
        if committed and args.port:
            if before.data:
                pump.stage_program(before.data)
                pump.commit_program(pump.verify_program().crc)
                print("restored the rig's previous program (crc %08x)" % before.crc)
            else:
                print("note: the rig had no program before; the benchmark program is now running")
    if not args.no_mpy:
        micropython_figures(200)
    return 0


if __name__ == "__main__":
    from pumpctl.errors import PumpError
    try:
        sys.exit(main())
    except PumpError as exc:
        print("bench_protocol: %s" % exc, file=sys.stderr)
        sys.exit(1)
