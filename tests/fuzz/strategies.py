"""Inputs near the formats: valid values, their near misses, and junk, mixed."""
from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(JSON_SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                    max_leaves=12)

OCTET = st.integers(0, 300)
IPV4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", OCTET, OCTET, OCTET, OCTET)
IPV6 = st.sampled_from(["fd00::", "fd10:244::", "2001:db8::1", "::", "fe80::1", "::ffff:10.0.0.1", "fd00:::1",
                        "1:2:3:4:5:6:7:8:9", "g::1"])
PLEN = st.integers(-1, 140)
CIDR4 = st.builds(lambda ip, p: f"{ip}/{p}", IPV4, PLEN) | IPV4
CIDR6 = st.builds(lambda ip, p: f"{ip}/{p}", IPV6, PLEN) | IPV6
ADDRESSISH = CIDR4 | CIDR6 | IPV4 | IPV6 | st.text(max_size=20)
MAC = st.sampled_from(["0a:58:00:00:00:01", "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee",
                       "aa-bb-cc-dd-ee-ff", "", "zz:zz:zz:zz:zz:zz"]) | st.text(max_size=20)


def maybe(strategy, junk=JSON):
    """Mostly the field's own kind, sometimes any JSON value."""
    return st.one_of(strategy, strategy, strategy, junk)
