import pytest

from hosts import services
from lab import labctl
from tests.lab import lab, lab2, lab_domain  # noqa: F401  (fixtures)
from tests.lab_resources import isolated_net, lab_conn, lab_host, made_vms, test_net, test_pool  # noqa: F401


@pytest.fixture
def panel_key_authorized(lab) -> None:  # noqa: F811
    """The lab's sshd accepts the panel's own key, as an admin would set it up on a hypervisor."""
    ident = services.identity()
    ident.ensure()
    labctl.authorize_key(ident.public_key_line())
