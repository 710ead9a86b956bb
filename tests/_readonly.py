"""A folder nobody can write into, root included (the tests run as root in CI), for the bad-output tests."""

import os
import subprocess

import pytest


def read_only(folder):
    """Make ``folder`` unwritable even for root (who ignores permission bits): the immutable attribute."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if r.returncode != 0:
            folder.chmod(0o755)
            pytest.skip("running as root and chattr +i is not available here")


def writable(folder):
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)
