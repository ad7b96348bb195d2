import pytest

from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings


@pytest.fixture
def make(etcd_server, etcd_prefix):
    """make(**EtcdSettings overrides) -> an EtcdLeaseBackend on the test's prefix, closed afterwards."""
    made = []

    def make(**overrides) -> EtcdLeaseBackend:
        b = EtcdLeaseBackend(EtcdSettings(endpoints=(etcd_server.endpoint,), prefix=etcd_prefix, **overrides))
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
