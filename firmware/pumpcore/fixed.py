"""Small-int arithmetic for the RP2040 (31-bit small ints): the `const` shim and mul_divmod."""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from pumpcore import text

SMALL_INT_MAX = const(0x3FFFFFFF)  # largest RP2040 small int (2**30 - 1)


def mul_divmod(a, b, d):
    """Return divmod(a * b, d) for 0 <= a, b < 2**30 and 0 < d < 2**29 without forming a * b.

    Shift-and-add long multiplication modulo d: every intermediate remainder stays below
    2**30, so on the RP2040 nothing becomes a heap-allocated big int unless the quotient
    itself is one. Meant for set-up time (segment or bolus start), not per tick.
    """
    if a < 0 or b < 0 or d <= 0:
        raise ValueError(text("mul_divmod", a, b, d))
    qa, ra = divmod(a, d)
    q = 0
    r = 0
    bit = 1
    while bit <= b:
        bit <<= 1
    while bit > 1:
        bit >>= 1
        q <<= 1
        r <<= 1
        if r >= d:
            r -= d
            q += 1
        if b & bit:
            r += ra
            if r >= d:
                r -= d
                q += 1
    return qa * b + q, r


def ceil_muldiv_sub(a, b, sub, d, cap):
    """Return min(cap, ceil((a * b - sub) / d)) with small ints only, never below 0.

    For 0 <= a < 2**30, 0 <= b < 2**30, 0 <= sub < 2**30, 0 < d < 2**30 and 0 < cap < 2**28.
    Long division of a * b by d, most significant part of `a` first: in base-512 digits when
    d <= 2**20 (4 steps), else bit by bit with every running remainder kept below d by adding
    "the complement" instead of doubling past d. The quotient is abandoned (the answer is
    `cap`) as soon as it cannot come back under cap.
    Allocation-free: used by the scheduler to find the ms of the next microstep.
    """
    qb = b // d
    rb = b - qb * d
    q = 0
    r = 0
    limit = cap + (sub // d) + 2
    if d <= 0x100000 and qb < 0x100000 and a < 0x40000000:
        # base-512 digits of a: r*512 + digit*rb < 2**29 + 2**29, q*512 + digit*qb < 2**30
        s = 27
        while s >= 0:
            if q > (limit >> 9):
                return cap
            digit = (a >> s) & 511
            x = r * 512 + digit * rb
            k = x // d
            q = q * 512 + digit * qb + k
            r = x - k * d
            s -= 9
        bit = 1
    else:
        bit = 1
        while bit <= a:
            bit <<= 1
    while bit > 1:
        bit >>= 1
        # (q, r) <- 2 * (q, r)
        q += q
        if r >= d - r:
            r -= d - r
            q += 1
        else:
            r += r
        if a & bit:
            q += qb
            if r >= d - rb:
                r -= d - rb
                q += 1
            else:
                r += rb
        if q > limit:
            return cap
    # a * b == q * d + r; now take off `sub`
    if r >= sub:
        if r > sub:
            q += 1
    else:
        q -= (sub - r) // d
    if q < 0:
        q = 0
    if q > cap:
        return cap
    return q
