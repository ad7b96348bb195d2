"""JSON through the C accelerator `_json` alone.

`import json` pulls in `re` and `enum` (~10 ms on a loaded node), a third of the plugin's
start-up. The C scanner/encoder are what `json` itself uses; we only skip the Python shell.
"""
import _json

_SPLIT_NUMBER = None


class _Context:
    # The attributes _json.make_scanner reads from json.JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(text):
    """Parse one JSON document; ValueError (with a position) on anything else."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    i, n = 0, len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        value, end = _scan(text, i)
    except StopIteration as err:
        raise ValueError(f"expected a JSON value at character {err.value}") from None
    except SystemError:
        # _json builds its error from json.decoder only if that is already imported (3.11);
        # on this error path the full module's message is worth its import.
        import json
        try:
            json.loads(text)
        except ValueError as err:
            raise ValueError(str(err)) from None
        raise
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def _default(obj):
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                             ":", ",", False, False, True)


def dumps(value) -> str:
    return "".join(_encode(value, 0))
