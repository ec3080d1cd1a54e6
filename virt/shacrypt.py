"""SHA-512 crypt ("$6$"), as /etc/shadow and cloud-init's `passwd` take it, in pure Python.

After Ulrich Drepper's published algorithm (https://www.akkadia.org/drepper/SHA-crypt.txt): Python's
`crypt` module is deprecated and gone in 3.13, so one code path serves everywhere; the tests check it
against the specification's vectors and, where the module still exists, against crypt.crypt.
"""

from __future__ import annotations

import hashlib

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The order in which SHA-512 crypt writes the final digest's bytes, three at a time (then byte 63).
_ORDER = [(i % 63, (i + 21) % 63, (i + 42) % 63) for i in (0, 22, 44, 3, 25, 47, 6, 28, 50, 9, 31, 53, 12, 34, 56,
                                                            15, 37, 59, 18, 40, 62)]


def sha512_crypt(password: bytes, salt: str, rounds: int | None = None) -> str:
    """SHA-512 crypt ("$6$"), https://www.akkadia.org/drepper/SHA-crypt.txt. Without `rounds`: 5000, not
    written in the hash; given ones are kept between 1000 and 999999999 and written ("$6$rounds=N$")."""
    custom = rounds is not None
    rounds = 5000 if rounds is None else min(max(rounds, 1000), 999_999_999)
    salt_b = salt.encode()[:16]
    plen = len(password)
    b = hashlib.sha512(password + salt_b + password).digest()
    a = hashlib.sha512(password + salt_b)
    for _ in range(plen // 64):
        a.update(b)
    a.update(b[:plen % 64])
    n = plen
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    c = a.digest()
    dp = hashlib.sha512(password * plen).digest()
    p = (dp * (plen // 64 + 1))[:plen]
    ds = hashlib.sha512(salt_b * (16 + c[0])).digest()
    s = ds[:len(salt_b)]
    for i in range(rounds):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    out = []
    for x, y, z in _ORDER:
        out.append(_b64(c[x], c[y], c[z], 4))
    out.append(_b64(0, 0, c[63], 2))
    head = f"$6$rounds={rounds}$" if custom else "$6$"
    return f"{head}{salt_b.decode()}${''.join(out)}"


def _b64(b2: int, b1: int, b0: int, count: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    chars = []
    for _ in range(count):
        chars.append(ITOA64[w & 0x3F])
        w >>= 6
    return "".join(chars)
