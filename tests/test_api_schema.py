"""The API keeps its own schema: schemathesis generates requests from a real server's
/openapi.json and checks every answer against it (status documented, body of the documented
model, schema-valid requests accepted, schema-invalid ones refused, no server error)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cli]

# POST /api/predict takes any bytes of an image type: no schema can say that they decode to
# an image with ink, so there a schema-valid body may also be refused as unreadable (400),
# too large once decoded (413) or blank (422), each documented with its error model.
CONFIG = """
[[operations]]
include-path = "/api/predict"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "404", "413", "415", "422"]
"""


def test_schemathesis_finds_no_failure_in_a_real_server(live_server, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists() and not shutil.which("schemathesis"):
        pytest.fail("schemathesis is a test dependency: pip install -e '.[test]'")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    done = subprocess.run(
        [str(cli), "--config-file", str(tmp_path / "schemathesis.toml"), "--no-color", "run",
         f"{live_server}/openapi.json", "--checks", "all", "--max-examples", "40",
         "--seed", "1", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    generated = re.search(r"Test cases:\n\s+(\d+) generated, (\d+) passed", done.stdout)
    assert generated and generated[1] == generated[2] and int(generated[1]) > 50, \
        done.stdout[-2000:]
    assert "API Operations:\n  Selected: 3/3\n  Tested: 3" in done.stdout
