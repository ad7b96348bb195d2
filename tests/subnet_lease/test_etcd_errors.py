"""Which etcd errors are retryable, and how compaction is told: by type and gRPC status, never text."""
import grpc
import pytest
from pyetcd import exceptions as etcd_exc

from subnet_lease.backend import BackendUnavailable, LeaseError
from subnet_lease.etcd_client import EtcdConnection, EtcdSettings


class StatusError(grpc.RpcError):
    """What grpc raises for a failed call: a status code and its details."""

    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class NoClient(EtcdConnection):
    def client(self):
        return None


def call_raising(err):
    conn = NoClient(EtcdSettings(endpoints=("http://127.0.0.1:1",)))

    def fn(_client):
        raise err

    return conn.call("range", fn)


def test_a_read_below_the_compaction_revision_is_told_by_its_status_not_its_text():
    with pytest.raises(etcd_exc.RevisionCompactedError):
        call_raising(StatusError(grpc.StatusCode.OUT_OF_RANGE, "mvcc: history is gone"))


def test_the_word_compacted_in_another_error_is_not_compaction():
    with pytest.raises(BackendUnavailable):
        call_raising(StatusError(grpc.StatusCode.UNAVAILABLE, "endpoint compacted-etcd:2379 is down"))


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                  grpc.StatusCode.UNAUTHENTICATED])
def test_transport_failures_are_retryable(code):
    with pytest.raises(BackendUnavailable, match=code.name):
        call_raising(StatusError(code, "x"))


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED])
def test_a_refused_request_is_a_lease_error_not_retryable(code):
    with pytest.raises(LeaseError) as err:
        call_raising(StatusError(code, "x"))
    assert not isinstance(err.value, BackendUnavailable)


@pytest.mark.parametrize("err", [ValueError("bad value"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                 OSError("disk")])
def test_value_and_os_errors_are_not_disguised_as_an_unreachable_store(err):
    with pytest.raises(type(err)):
        call_raising(err)
