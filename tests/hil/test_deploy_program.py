"""HIL: deploy with pumpctl deploy, program upload with review and confirm, every example program accepted by the rig."""
import pytest


from .helpers import EXAMPLE_FILES


def test_deploy_verified_and_key_provisioned(rig, pump, record):
    d = rig.deploy
    if d is None:
        pytest.skip("--no-deploy: the firmware on the rig was not deployed by this run")
    assert d.ok, "pumpctl deploy failed: %s\n%s" % (d.error, "\n".join(d.log[-10:]))
    record("files deployed and verified by sha256", d.verified, "files")
    record("deploy wall time", round(d.wall_s, 1), "s")
    assert d.files > 0 and d.verified == d.files
    # the key deploy provisioned signs a delivery change the rig accepts
    pump.sync_time()
    hello = pump.hello()
    assert hello.auth_counter >= 1
    record("firmware", "%s build %s" % (hello.firmware_version, hello.build_hash))


def test_program_upload_review_and_confirm(rig, pump, program, record):
    pump.refill(pump.limits().max_reservoir_nl, 2000)   # the rig's whole reservoir (20 mL or 1 mL)
    pump.sync_time()
    up = program("continuous_186.toml")
    assert any("186" in line for line in up.review.staged_lines), up.review.staged_lines
    assert up.review.running_crc == 0          # nothing ran before: the review said so
    st = pump.status()
    assert st.program_crc == up.crc and st.basal_ng_day == 186_000
    record("program crc", "%08x" % up.crc)


def test_unconfirmed_program_leaves_running_untouched(rig, pump, program):
    first = program("continuous_186.toml")
    from pumpctl.hil.fixtures import load_program_file
    other = load_program_file("flex_4step.toml")
    review = pump.upload_program(bytes(other.encode()), confirm=lambda r: False)
    assert not review.committed
    assert review.running_crc == first.crc and review.staged_lines
    assert pump.status().program_crc == first.crc


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_program_accepted(rig, pump, program, name):
    up = program(name)
    assert pump.status().program_crc == up.crc
