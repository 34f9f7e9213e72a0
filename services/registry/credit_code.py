"""The unified social credit code (统一社会信用代码), GB 32100-2015.

18 characters: registration authority (1), entity type (1), administrative division
code (6 digits), organisation code (9), check character (1). The alphabet is the digits
and 21 capital letters — I, O, Z, S and V are never used, so a code cannot be misread.
The check character makes the weighted sum of all 18 values ≡ 0 (mod 31); weight i is
3^(i-1) mod 31 (GB 32100-2015, 4.3 and annex B).
"""

from __future__ import annotations

__all__ = ["ALPHABET", "check_character", "problem"]

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {char: index for index, char in enumerate(ALPHABET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, 17, 20, …


def check_character(body: str) -> str:
    """The check character (position 18) for the first 17 characters `body`."""
    if len(body) != 17 or any(char not in _VALUE for char in body):
        raise ValueError("the body is 17 characters of the code's alphabet")
    total = sum(_VALUE[char] * weight for char, weight in zip(body, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: object) -> str | None:
    """What is wrong with `code` as a unified social credit code, or None if it is valid."""
    if not isinstance(code, str):
        return "must be a string"
    if len(code) != 18:
        return "must be 18 characters"
    bad = sorted({char for char in code if char not in _VALUE})
    if bad:
        return f"contains characters outside GB 32100-2015's alphabet: {''.join(bad)}"
    if not code[2:8].isdigit():
        return "characters 3 to 8 must be the administrative division code (digits)"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r}, expected {expected!r}"
    return None
