"""Inside a Prefect flow run, credentials come from Secret blocks (real local Prefect server)."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.blocks.system import Secret

from pipelines.fetch.credentials import PrefectSecretCredentials, default_credentials, redact


@pytest.mark.slow  # starts Prefect's local server (shared with the other Prefect tests in a full run)
def test_secret_blocks_are_read_inside_a_flow_run(monkeypatch):
    for var in ("PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")
    Secret(value="flow-user").save("climb-physionet-username", overwrite=True)
    Secret(value="flow-block-pw-5521").save("climb-physionet-password", overwrite=True)

    @flow
    def look_up() -> tuple[str | None, str | None, bool]:
        cred = default_credentials().get("physionet")
        assert cred is not None
        return cred.username, cred.origin, cred.secret.get() == "flow-block-pw-5521"

    user, origin, matches = look_up()
    assert (user, origin, matches) == ("flow-user", "Prefect Secret block climb-physionet-password", True)
    assert redact("x flow-block-pw-5521 y") == "x *** y"  # registered for scrubbing once loaded
    assert PrefectSecretCredentials().get("physionet") is None  # outside the run: not consulted
