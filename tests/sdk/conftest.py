from tests.sdk.fixtures import clients_fixture, sink_fixture  # noqa: F401
