"""Event-record and state-record codecs: round trips, errors that name field/value/limit."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as hs

from pumpcore import logrec, logtext, statecodec
from pumpcore.logrec import LogRecordError
from pumpcore.statecodec import PersistentState, StateError

i32 = hs.integers(-(1 << 31), (1 << 31) - 1)


@settings(max_examples=300, deadline=None)
@given(hs.integers(1, (1 << 32) - 1), hs.integers(0, 65535), hs.integers(0, 86_399_999),
       hs.integers(1, logrec.EV_CODE_MAX), i32, i32, i32, i32)
def test_record_round_trip(seq, day, ms, code, a0, a1, a2, a3):
    rec = logrec.encode(seq, day, ms, code, a0, a1, a2, a3)
    assert len(rec) == 32
    assert logrec.decode(rec) == (seq, day, ms, code, a0, a1, a2, a3)
    assert logtext.describe(logrec.decode(rec)).startswith(f"seq {seq} day {day} ")


def test_every_event_code_has_a_name_and_argument_names():
    assert len(logtext.EVENT_NAMES) == len(logtext.EVENT_ARGS) == logrec.EV_CODE_MAX + 1
    names = logtext.EVENT_NAMES[1:]
    assert len(set(names)) == len(names) and all(names)
    for code in range(1, logrec.EV_CODE_MAX + 1):
        assert len(logtext.EVENT_ARGS[code]) == 4
    assert logtext.event_name(logrec.EV_HEAP) == "heap"
    assert logtext.event_name(logrec.EV_CODE_MAX + 1) == "event-%d" % (logrec.EV_CODE_MAX + 1)


def test_the_device_side_codec_carries_no_event_text():
    """Issue 16: the names are the host's (pumpcore.logtext); the device's codec keeps the codes."""
    assert not hasattr(logrec, "EVENT_NAMES") and not hasattr(logrec, "EVENT_ARGS")
    assert not hasattr(logrec, "describe")


@pytest.mark.parametrize("kwargs,words", [
    (dict(seq=0), "seq = 0: outside 1..4294967295"),
    (dict(ms=86_400_000), "ms = 86400000: outside 0..86399999"),
    (dict(day=70000), "day = 70000: outside 0..65535"),
    (dict(code=99), "code = 99: outside 1..%d" % logrec.EV_CODE_MAX),
    (dict(a2=1 << 31), "args[2] = 2147483648: outside"),
])
def test_encode_errors_name_field_value_limit(kwargs, words):
    args = dict(seq=1, day=0, ms=0, code=logrec.EV_RESET, a0=0, a1=0, a2=0, a3=0)
    args.update(kwargs)
    with pytest.raises(LogRecordError) as e:
        logrec.encode(**args)
    assert words in str(e.value)


def test_decode_rejects_erased_zeroed_and_each_bit_flip():
    rec = logrec.encode(77, 9000, 5, logrec.EV_REFILL, 20_000_000, 2000, 0, 0)
    for blank in (b"\xff" * 32, b"\x00" * 32):
        with pytest.raises(LogRecordError) as e:
            logrec.decode(blank)
        assert e.value.reason_code == logrec.BAD_CRC
    for i in range(32):
        for bit in range(8):
            bad = bytearray(rec)
            bad[i] ^= 1 << bit
            with pytest.raises(LogRecordError):
                logrec.decode(bytes(bad))
    with pytest.raises(LogRecordError) as e:
        logrec.decode(rec[:31])
    assert "record length = 31" in str(e.value)


ints_for = [hs.integers(lo, hi) for lo, hi in statecodec.FIELD_LIMITS]


@settings(max_examples=200, deadline=None)
@given(hs.tuples(*ints_for), hs.dictionaries(hs.integers(1, 255), hs.lists(i32, max_size=40), max_size=4),
       hs.dictionaries(hs.integers(1, 255), hs.binary(max_size=100), max_size=3),
       hs.integers(1, (1 << 30) - 1))
def test_state_round_trip(fixed, sections, blobs, seq):
    st = PersistentState()
    st.ints = list(fixed)
    st.sections = {k: tuple(v) for k, v in sections.items()}
    st.blobs = blobs
    rec = statecodec.encode(st, seq)
    back = statecodec.decode(rec)
    assert back == st and back.seq == seq


@pytest.mark.parametrize("field,value,words", [
    (statecodec.F_SAVE_MS, 86_400_000, "save_ms = 86400000: must be an int in 0..86399999"),
    (statecodec.F_BOLUS_ACTIVE, 2, "bolus_active = 2: must be an int in 0..1"),
    (statecodec.F_AUTH_COUNTER, -1, "auth_counter = -1: must be an int in 0..2147483647"),
])
def test_state_field_errors_name_field_value_limit(field, value, words):
    st = PersistentState()
    with pytest.raises(StateError) as e:
        st.set(field, value)
    assert words in str(e.value)
    st.ints[field] = value
    with pytest.raises(StateError) as e:
        statecodec.encode(st, 1)
    assert words in str(e.value)


def test_state_size_limits():
    st = PersistentState()
    st.sections[1] = tuple(range(1025))
    with pytest.raises(StateError) as e:
        statecodec.encode(st, 1)
    assert "section 1 length = 1025: at most 1024 ints" in str(e.value)
    st.sections[1] = (1, 2.5)
    with pytest.raises(StateError) as e:
        statecodec.encode(st, 1)
    assert "section 1 = 2.5: must be an int or a tuple of ints" in str(e.value)
    st.sections[1] = (1, 1 << 31)
    with pytest.raises(StateError) as e:
        statecodec.encode(st, 1)
    assert "section 1[1] = 2147483648: must be a signed 32-bit int" in str(e.value)
    st = PersistentState()
    st.blobs[2] = bytes(1025)
    with pytest.raises(StateError) as e:
        statecodec.encode(st, 1)
    assert "blob 2 length = 1025: at most 1024 bytes" in str(e.value)
    with pytest.raises(StateError) as e:
        statecodec.encode(PersistentState(), 0)
    assert "seq = 0" in str(e.value)


def test_bolus_in_progress_is_expressible_and_aborted_once():
    st = PersistentState()
    assert st.abort_bolus() is None
    serial = st.begin_bolus(2, 50_000)
    st.set(statecodec.F_BOLUS_DELIVERED_NG, 12_500)
    back = statecodec.decode(statecodec.encode(st, 3))
    assert back.bolus_in_progress()
    assert back.abort_bolus() == (2, 50_000, 12_500, serial)
    assert not back.bolus_in_progress()
    assert back.abort_bolus() is None
    assert back.get(statecodec.F_BOLUS_SERIAL) == serial


def test_program_crc_halves():
    st = PersistentState()
    st.set_program_crc(0xCBF43926)
    assert statecodec.decode(statecodec.encode(st, 1)).program_crc() == 0xCBF43926
    with pytest.raises(StateError):
        st.set_program_crc(1 << 32)


nested = hs.recursive(i32, lambda kids: hs.lists(kids, max_size=6).map(tuple), max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(hs.lists(nested, max_size=8).map(tuple))
def test_nested_sections_round_trip(obj):
    shape, vals = statecodec.flatten(obj)
    assert statecodec.unflatten(shape, vals) == obj
    st = PersistentState()
    st.sections[statecodec.SEC_APP] = obj
    assert statecodec.decode(statecodec.encode(st, 1)).sections[statecodec.SEC_APP] == obj


def _reference_flatten(obj, name="section"):
    """flatten() as it was before it was made to allocate less (fd1e37b): the shapes, values
    and errors the one-pass version must give."""
    raw, vals = bytearray(), []

    def walk(x, depth):
        if isinstance(x, int) and not isinstance(x, bool):
            if not -(1 << 31) <= x <= (1 << 31) - 1:
                raise StateError("%s[%d]" % (name, len(vals)), repr(x), "must be a signed 32-bit int")
            vals.append(x)
            raw.append(0x69)
            return
        if not isinstance(x, (tuple, list)):
            raise StateError(name, repr(x), "must be an int or a tuple of ints", statecodec.ERR_LAYOUT)
        if depth >= statecodec.MAX_DEPTH:
            raise StateError(name + " depth", depth + 1, "at most %d levels" % statecodec.MAX_DEPTH,
                             statecodec.ERR_LAYOUT)
        raw.append(0x28)
        for y in x:
            walk(y, depth + 1)
        raw.append(0x29)

    if not isinstance(obj, (tuple, list)):
        raise StateError(name, repr(obj), "must be a tuple of ints", statecodec.ERR_LAYOUT)
    walk(obj, 0)
    shape = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x69:
            j = i
            while j < len(raw) and raw[j] == 0x69:
                j += 1
            if j - i > 1:
                shape += b"%d" % (j - i)
            shape.append(0x69)
            i = j
        else:
            shape.append(raw[i])
            i += 1
    return bytes(shape), vals


leaf = hs.one_of(i32, hs.integers(-(1 << 33), 1 << 33), hs.booleans(), hs.just("x"))
deep = hs.recursive(leaf, lambda kids: hs.one_of(hs.lists(kids, max_size=5).map(tuple),
                                                  hs.lists(kids, max_size=3)), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(deep, hs.sampled_from(["section", 7]))
def test_flatten_gives_the_reference_shapes_values_and_errors(obj, name):
    want_name = "section 7" if name == 7 else name
    try:
        want = _reference_flatten(obj, want_name)
    except StateError as e:
        with pytest.raises(StateError) as got:
            statecodec.flatten(obj, name)
        assert str(got.value) == str(e)
        return
    assert statecodec.flatten(obj, name) == want


@pytest.mark.parametrize("shape,n", [(b"(i", 1), (b"i)", 1), (b"(3i)", 2), (b"(i)(i)", 2),
                                     (b"(2(i))", 1), (b"(x)", 0), (b"", 0)])
def test_malformed_shapes_are_refused(shape, n):
    with pytest.raises(StateError):
        statecodec.unflatten(shape, tuple(range(n)))


def test_real_scheduler_snapshot_survives_a_state_record():
    from pumpcore import limits, scheduler
    sched = scheduler.DoseScheduler(17_962, limits.HardLimits())
    snap = sched.snapshot()
    st = PersistentState()
    st.sections[statecodec.SEC_SCHEDULER] = snap
    rec = statecodec.encode(st, 9)
    back = statecodec.decode(rec).sections[statecodec.SEC_SCHEDULER]
    assert back == snap
    assert len(rec) < 1024
