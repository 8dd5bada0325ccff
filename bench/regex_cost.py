"""How long the regular expressions regex.py accepts can take, against ones it refuses.

Runs PCRE2 (the library HAProxy links, no JIT: slower than HAProxy's JIT,
so an upper bound) on adversarial paths of 2 KiB, and prints microseconds
per match for each pattern and whether regex.path_pattern accepts it.

    PYTHONPATH=operator python3 -m bench.regex_cost
"""

from __future__ import annotations

import ctypes
import time

from haproxy_ingress import regex
from haproxy_ingress.validate import Invalid

PATH_LENGTH = 2048
PATTERNS = (
    # accepted: the shapes ingress-nginx users write, and the worst the rules allow
    "/foo(/|$)(.*)",
    "/api/v[0-9]+/(.*)",
    "/[a-z]+/(.*)$",
    "/.*.*x$",
    "/[a-z]+[a-z]+$",
    "/.*.*.*x$",
    "/(?:ab|a)?(?:ab|a)?.*x",
    "/(a{1,100}){1,100}x",
    # refused: exponential or worse
    "/(a+)+$",
    "/(a|aa)*$",
    "/.*.*.*.*.*x$",
)
SUBJECTS = ("/" + "a" * (PATH_LENGTH - 2) + "!", "/" + "x" * (PATH_LENGTH - 2) + "!")


def _match_us(pattern: str, subject: str, repeat: int = 3) -> str:
    lib = regex._pcre2()
    assert lib is not None
    lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
    lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pcre2_match_8.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.pcre2_match_data_free_8.argtypes = [ctypes.c_void_p]
    code = ctypes.c_int()
    offset = ctypes.c_size_t()
    raw = ("(?i:" + pattern + ")").encode()
    compiled = lib.pcre2_compile_8(raw, len(raw), 0, ctypes.byref(code), ctypes.byref(offset), None)
    data = lib.pcre2_match_data_create_from_pattern_8(compiled, None)
    text = subject.encode()
    best = float("inf")
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = lib.pcre2_match_8(compiled, text, len(text), 0, 0, data, None)
        best = min(best, time.perf_counter() - start)
    lib.pcre2_match_data_free_8(data)
    lib.pcre2_code_free_8(compiled)
    # -47: PCRE2_ERROR_MATCHLIMIT (HAProxy then treats the request as not matching)
    return f"{best * 1e6:12.0f} us (rc {result})"


def main() -> None:
    for pattern in PATTERNS:
        try:
            regex.path_pattern(pattern, "bench")
            verdict = "accepted"
        except Invalid:
            verdict = "refused "
        costs = "  ".join(_match_us(pattern, subject) for subject in SUBJECTS)
        print(f"{verdict} {pattern:28} {costs}")


if __name__ == "__main__":
    main()
